"""Helpers for tests of the full model (layers, directions, projection, lengths): shapes of
its inputs and states, random data for them, and the comparison with reference.reference_model.
Importable because conftest.py puts this folder on sys.path."""

import numpy as np

from reference import reference_model
from testutil import assert_close


def state_shapes(model, batch=None):
    """(h0 shape, c0 shape) for `model`; batch=None means unbatched (no B axis)."""
    layers = model.num_layers * (2 if model.bidirectional else 1)
    out = model.proj_size or model.hidden_size
    if batch is None:
        return (layers, out), (layers, model.hidden_size)
    return (layers, batch, out), (layers, batch, model.hidden_size)


def output_shape(model, steps, batch=None):
    """The model's output shape for T = steps (batch=None: unbatched)."""
    features = (2 if model.bidirectional else 1) * (model.proj_size or model.hidden_size)
    if batch is None:
        return (steps, features)
    return (batch, steps, features) if model.batch_first else (steps, batch, features)


def random_input(rng, model, steps, batch=None, dtype=np.float64):
    """x ~ N(0, 1) laid out as the model reads it (batch=None: unbatched)."""
    d = model.input_size
    if batch is None:
        shape = (steps, d)
    else:
        shape = (batch, steps, d) if model.batch_first else (steps, batch, d)
    return rng.standard_normal(shape).astype(dtype)


def random_hx(rng, model, batch=None, dtype=np.float64, scale=0.5):
    """(h0, c0) ~ N(0, scale^2) in the model's state shapes (batch=None: unbatched)."""
    h_shape, c_shape = state_shapes(model, batch)
    return ((scale * rng.standard_normal(h_shape)).astype(dtype),
            (scale * rng.standard_normal(c_shape)).astype(dtype))


def random_lengths(rng, batch, steps):
    """(B,) lengths in [1, T] in random order, containing 1 and T when B >= 2."""
    lengths = rng.integers(1, steps + 1, size=batch)
    if batch >= 2:
        lengths[:2] = 1, steps
    rng.shuffle(lengths)
    return lengths


def check_model(model, x, hx=None, lengths=None):
    """Run model(x, hx, lengths) and reference_model on the same (dtype-rounded) data;
    compare output, h_n and c_n within the dtype's tolerance. Returns the model's results."""
    kwargs = {} if lengths is None else {"lengths": lengths}
    out, (h_n, c_n) = model(x, hx, **kwargs) if hx is not None else model(x, **kwargs)
    r_out, (r_h, r_c) = reference_model(
        model.state_dict(), x, hx, lengths, batch_first=model.batch_first,
        padding=model.padding, dtype=model.dtype)
    assert_close(out, r_out, model.dtype, "output")
    assert_close(h_n, r_h, model.dtype, "h_n")
    assert_close(c_n, r_c, model.dtype, "c_n")
    return out, (h_n, c_n)


def assert_same(a, b, err_msg=""):
    """Bit-identical arrays of the same dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (err_msg, a.dtype, b.dtype, a.shape,
                                                       b.shape)
    np.testing.assert_array_equal(a, b, err_msg=err_msg)


def assert_results_same(r1, r2):
    """Two (output, (h_n, c_n)) results are bit-identical."""
    assert_same(r1[0], r2[0], "output")
    assert_same(r1[1][0], r2[1][0], "h_n")
    assert_same(r1[1][1], r2[1][1], "c_n")
