"""Every memory layout NumPy can make gives the right numbers: the model call, the
functional form, the stream and training, against the float64 reference (or against
the same call on a C-contiguous copy).

The layouts go beyond C and F order: steps along any axis, negative strides,
broadcast (zero) strides, data that is not aligned to its item size, the field of a
packed record array (byte strides such as 13 that are no multiple of the item size),
the other byte order and read-only views. Hypothesis draws shapes, dtypes and a
layout per argument.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cylstm
from reference import lstm_reference
from testutil import assert_close, check_against_reference, tol

SETTINGS = settings(max_examples=40, deadline=None, database=None)

LAYOUTS = ["C", "F", "step", "negative", "unaligned", "record", "swapped", "readonly"]


def in_layout(values, how, dtype):
    """`values` as a `dtype` array laid out as `how` says; the same numbers."""
    values = np.asarray(values, dtype=dtype)
    if how == "F":
        return np.asfortranarray(values)
    if how == "step":  # every other element of a larger array, along every axis
        big = np.zeros(tuple(2 * n for n in values.shape), dtype)
        view = big[tuple(slice(None, None, 2) for _ in values.shape)]
        view[...] = values
        return view
    if how == "negative":  # a reversed copy seen backwards along every axis
        flip = tuple(slice(None, None, -1) for _ in values.shape)
        return np.ascontiguousarray(values[flip])[flip]
    if how == "unaligned":  # C order, starting one byte past an aligned address
        raw = np.zeros(values.nbytes + 1, np.uint8)
        view = raw[1:].view(dtype).reshape(values.shape)
        view[...] = values
        assert not view.flags.aligned or values.size == 0
        return view
    if how == "record":  # a field of packed records: byte strides of itemsize * n + 1
        record = np.dtype([("flag", "u1"), ("value", dtype)])
        packed = np.zeros(values.shape, record)
        packed["value"] = values
        return packed["value"]
    if how == "swapped":  # the other byte order
        return values.astype(values.dtype.newbyteorder())
    if how == "readonly":
        values = values.copy()
        values.flags.writeable = False
        return values
    return np.ascontiguousarray(values)


def broadcast_batch(values):
    """A (T, B, D) array whose batch rows are one row seen B times (stride 0)."""
    return np.broadcast_to(values[:, :1], values.shape)


layouts = st.sampled_from(LAYOUTS)
dtypes = st.sampled_from([np.float32, np.float64])


@SETTINGS
@given(T=st.integers(1, 9), B=st.integers(1, 5), D=st.integers(1, 6), H=st.integers(1, 7),
       dtype=dtypes, batch_first=st.booleans(), x_layout=layouts, state_layout=layouts,
       weight_layout=layouts, broadcast=st.booleans(), seed=st.integers(0, 2**31))
def test_model_call_in_any_layout(T, B, D, H, dtype, batch_first, x_layout, state_layout,
                                  weight_layout, broadcast, seed):
    rng = np.random.default_rng(seed)
    model = cylstm.LSTM(D, H, batch_first=batch_first, dtype=dtype, seed=seed)
    x = rng.standard_normal((T, B, D))
    if broadcast:
        x = np.ascontiguousarray(broadcast_batch(x))
    if batch_first:
        x = x.transpose(1, 0, 2)
    x_given = in_layout(x, x_layout, dtype)
    if broadcast and x_layout == "C":
        x_given = broadcast_batch(x_given.transpose(1, 0, 2) if batch_first else x_given)
        x_given = x_given.transpose(1, 0, 2) if batch_first else x_given
    hx = tuple(in_layout(0.5 * rng.standard_normal((1, B, H)), state_layout, dtype)
               for _ in range(2))
    model.weight_hh_l0 = in_layout(model.weight_hh_l0, weight_layout, dtype)
    before = [np.array(a) for a in (x_given, *hx)]
    check_against_reference(model, x_given, hx)
    for original, given_array in zip(before, (x_given, *hx)):  # nothing was modified
        np.testing.assert_array_equal(given_array, original)


@SETTINGS
@given(T=st.integers(1, 9), B=st.integers(1, 5), D=st.integers(1, 6), H=st.integers(1, 7),
       dtype=dtypes, x_layout=layouts, weight_layout=layouts, seed=st.integers(0, 2**31))
def test_functional_form_in_any_layout(T, B, D, H, dtype, x_layout, weight_layout, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D))
    bound = 1 / np.sqrt(H)
    w_ih, w_hh = (rng.uniform(-bound, bound, shape) for shape in ((4 * H, D), (4 * H, H)))
    b_ih, b_hh = (rng.uniform(-bound, bound, 4 * H) for _ in range(2))
    output, h_n, c_n = cylstm.lstm(
        in_layout(x, x_layout, dtype), in_layout(w_ih, weight_layout, dtype),
        in_layout(w_hh, weight_layout, dtype), in_layout(b_ih, weight_layout, dtype), b_hh)
    rounded = [np.asarray(a, dtype).astype(np.float64) for a in (x, w_ih, w_hh, b_ih, b_hh)]
    r_out, r_h, r_c = lstm_reference(*rounded)
    assert_close(output, r_out, dtype, "output")
    assert_close(h_n, r_h, dtype, "h_n")
    assert_close(c_n, r_c, dtype, "c_n")


@SETTINGS
@given(T=st.integers(2, 12), B=st.integers(1, 4), D=st.integers(1, 5), H=st.integers(1, 6),
       dtype=dtypes, layout=layouts, cut=st.integers(1, 11), seed=st.integers(0, 2**31))
def test_stream_chunks_in_any_layout(T, B, D, H, dtype, layout, cut, seed):
    rng = np.random.default_rng(seed)
    model = cylstm.LSTM(D, H, num_layers=2, dtype=dtype, seed=seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    cut = min(cut, T - 1)
    stream = model.stream()
    streamed = np.concatenate([stream(in_layout(x[:cut], layout, dtype)),
                               stream(in_layout(x[cut:], layout, dtype))])
    np.testing.assert_allclose(streamed, model(x)[0], **tol(dtype))


@SETTINGS
@given(T=st.integers(1, 8), B=st.integers(1, 4), D=st.integers(1, 5), H=st.integers(1, 6),
       dtype=dtypes, layout=layouts, with_lengths=st.booleans(), seed=st.integers(0, 2**31))
def test_training_in_any_layout(T, B, D, H, dtype, layout, with_lengths, seed):
    """forward_train and backward on any layout give what they give on C order."""
    rng = np.random.default_rng(seed)
    model = cylstm.LSTM(D, H, dtype=dtype, seed=seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    grad_output = rng.standard_normal((T, B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    expected_out, _, backward = model.forward_train(x, lengths=lengths)
    expected = backward(grad_output)
    out, _, backward = model.forward_train(in_layout(x, layout, dtype), lengths=lengths)
    grad_x, (grad_h0, grad_c0), grads = backward(in_layout(grad_output, layout, dtype))
    np.testing.assert_allclose(out, expected_out, **tol(dtype))
    np.testing.assert_allclose(grad_x, expected[0], **tol(dtype))
    np.testing.assert_allclose(grad_h0, expected[1][0], **tol(dtype))
    for name, value in grads.items():
        np.testing.assert_allclose(value, expected[2][name], **tol(dtype), err_msg=name)


@pytest.mark.parametrize("batch_first, T, B, D", [
    (False, 5, 3, 4), (False, 5, 2, 1), (True, 1, 3, 4), (False, 1, 1, 6)])
def test_packed_record_field_gives_the_right_answer(batch_first, T, B, D, dtype):
    """The issue's case: strides like (26, 13, 4) once gave garbage with no error for
    B <= 3, for D = 1 and with batch_first at T = 1."""
    rng = np.random.default_rng(0)
    shape = (B, T) if batch_first else (T, B)
    records = np.zeros(shape, dtype=[("flag", "u1"), ("x", dtype, (D,))])
    records["x"] = rng.standard_normal(shape + (D,))
    x = records["x"]
    assert x.strides[-2] % x.itemsize  # a byte stride, no multiple of the item size
    model = cylstm.LSTM(D, 5, batch_first=batch_first, dtype=dtype, seed=1)
    check_against_reference(model, x)
    stream = model.stream()
    np.testing.assert_allclose(stream(x), model(np.array(x))[0], **tol(dtype))


def test_the_kernel_refuses_what_it_cannot_address():
    """Below the Python face, the kernel itself refuses byte strides and misalignment."""
    from cylstm import _lstm

    records = np.zeros((3, 2), dtype=[("flag", "u1"), ("x", np.float32, (4,))])
    w_ih, w_hh = np.zeros((8, 4), np.float32), np.zeros((8, 2), np.float32)
    bias, h, c = np.zeros(8, np.float32), np.zeros((2, 2), np.float32), np.zeros((2, 2),
                                                                                 np.float32)
    out = np.zeros((3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="strides that are non-negative multiples of the item"):
        _lstm.forward_layer(records["x"], w_ih, w_hh, bias, h, c, out)
