"""Streaming (`model.stream()`, cylstm.LSTMStream): feeding a sequence in any chunks gives the
outputs and final state of one call on the whole sequence; state get/set/reset; continuing from
a given state; bidirectional models refused.

Not bit for bit: the kernel computes the input projection of a chunk's steps * B rows in one
gemm, and OpenBLAS rounds a row differently depending on how many rows the call has (its tail
kernels sum in another order), so another chunking can change the last bit (seen: ~1 ulp with
33 input features, or 8-32 in a second layer). Comparisons across chunkings use the dtype's
tolerance; where the stream makes the same call as the model, they are exact."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cylstm
from modelutil import (assert_results_same, assert_same, random_hx, random_input,
                       state_shapes)
from testutil import tol

D, H = 3, 5


def _model(layers=2, proj=2, batch_first=False, dtype=np.float64, seed=0, **kwargs):
    return cylstm.LSTM(D, H, layers, proj_size=proj, batch_first=batch_first, dtype=dtype,
                       seed=seed, **kwargs)


def _time_axis(model, x):
    return 1 if model.batch_first and x.ndim == 3 else 0


def _split(model, x, cuts):
    """x cut along its time axis at the (sorted) positions `cuts`; chunks may be empty."""
    return np.split(x, sorted(cuts), axis=_time_axis(model, x))


def _feed(stream, chunks, model, x):
    outputs = [stream(chunk) for chunk in chunks]
    return np.concatenate(outputs, axis=_time_axis(model, x))


def _assert_matches(result, expected):
    """(output, (h, c)) of a stream agrees with one call's within the dtype's tolerance, with
    the same dtype and shapes."""
    for name, got, want in zip(["output", "h", "c"], [result[0], *result[1]],
                               [expected[0], *expected[1]]):
        assert got.dtype == want.dtype and got.shape == want.shape, (name, got.shape,
                                                                     want.shape)
        np.testing.assert_allclose(got, want, err_msg=name, **tol(got.dtype))


@settings(max_examples=25, deadline=None, database=None)
@given(layers=st.integers(1, 2), proj=st.sampled_from([0, 2]), batch_first=st.booleans(),
       unbatched=st.booleans(), batch=st.integers(1, 4), steps=st.integers(1, 12),
       cut_fractions=st.lists(st.floats(0, 1), max_size=6), with_hx=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1),
       input_size=st.sampled_from([D, 33]))
def test_any_chunking_equals_one_call(layers, proj, batch_first, unbatched, batch, steps,
                                      cut_fractions, with_hx, dtype, seed, input_size):
    rng = np.random.default_rng(seed)
    model = cylstm.LSTM(input_size, H, layers, proj_size=proj, batch_first=batch_first,
                        dtype=dtype, seed=seed % 1000)
    batch = None if unbatched else batch
    x = random_input(rng, model, steps, batch, dtype)
    hx = random_hx(rng, model, batch, dtype) if with_hx else None
    expected = model(x, hx)
    cuts = [int(round(f * steps)) for f in cut_fractions]   # duplicates: empty chunks
    stream = model.stream()
    if with_hx:
        stream.state = hx
    out = _feed(stream, _split(model, x, cuts), model, x)
    _assert_matches((out, stream.state), expected)


@pytest.mark.parametrize("chunk", [1, 2, 5])
@pytest.mark.parametrize("layers,proj", [(1, 0), (2, 0), (2, 2)])
def test_fixed_chunk_sizes_batch_of_one(chunk, layers, proj, dtype):
    """B = 1 and one step per chunk: the smallest BLAS calls (gemv), the same numbers."""
    rng = np.random.default_rng(chunk)
    model = _model(layers, proj, dtype=dtype)
    x = random_input(rng, model, 11, 1, dtype)
    expected = model(x)
    stream = model.stream()
    out = _feed(stream, [x[i:i + chunk] for i in range(0, 11, chunk)], model, x)
    _assert_matches((out, stream.state), expected)


def test_state_lifecycle(dtype):
    rng = np.random.default_rng(1)
    model = _model(2, 2, dtype=dtype)
    stream = model.stream()
    assert isinstance(stream, cylstm.LSTMStream)
    assert stream.state is None
    x = random_input(rng, model, 8, 3, dtype)

    first = stream(x[:3])
    h, c = stream.state
    assert (h.shape, c.shape) == state_shapes(model, 3)
    assert h.dtype == c.dtype == np.dtype(dtype)
    assert_results_same((first, (h, c)), model(x[:3]))      # the same call: exact
    kept = (h.copy(), c.copy())
    second = stream(x[3:])
    assert_same(h, kept[0])  # a state read earlier is not changed by later chunks
    assert_same(c, kept[1])
    assert_results_same((second, stream.state), model(x[3:], kept))
    _assert_matches((np.concatenate([first, second]), stream.state), model(x))

    stream.reset()
    assert stream.state is None
    assert_same(stream(x), model(x)[0])


def test_set_state_continues_from_it(dtype):
    rng = np.random.default_rng(2)
    model = _model(2, 2, dtype=dtype)
    x = random_input(rng, model, 9, 2, dtype)
    hx = random_hx(rng, model, 2, dtype)
    stream = model.stream()
    stream.state = hx
    out = _feed(stream, [x[:4], x[4:]], model, x)
    _assert_matches((out, stream.state), model(x, hx))
    # the state of one stream handed to another: it continues the same sequence
    other = model.stream()
    other(x[:5])
    resumed = model.stream()
    resumed.state = other.state
    rest = resumed(x[5:])
    assert_results_same((rest, resumed.state), model(x[5:], other.state))
    full, (h_n, c_n) = model(x)
    _assert_matches((rest, resumed.state), (full[5:], (h_n, c_n)))


def test_empty_chunk_keeps_the_state(dtype):
    rng = np.random.default_rng(9)
    model = _model(2, 2, dtype=dtype)
    x = random_input(rng, model, 5, 2, dtype)
    stream = model.stream()
    first = stream(x[:2])
    before = stream.state
    out = stream(x[2:2])
    assert out.shape == (0, 2, 2) and out.dtype == np.dtype(dtype)
    assert_same(stream.state[0], before[0])
    assert_same(stream.state[1], before[1])
    out = np.concatenate([first, stream(x[2:])])
    _assert_matches((out, stream.state), model(x))


def test_set_state_converts_and_copies():
    rng = np.random.default_rng(3)
    model = _model(2, 2, dtype=np.float32)
    h0, c0 = random_hx(rng, model, 2, np.float64)
    stream = model.stream()
    stream.state = [h0.tolist(), c0]           # any array-like pair, converted
    h, c = stream.state
    assert h.dtype == c.dtype == np.float32
    np.testing.assert_array_equal(h, h0.astype(np.float32))
    c0_32 = c0.astype(np.float32)
    c0[...] = 99.0                             # the stream keeps its own copy
    assert_same(stream.state[1], c0_32)
    x = random_input(rng, model, 4, 2, np.float32)
    expected = model(x, (h0.astype(np.float32), c0_32))
    assert_results_same((stream(x), stream.state), expected)
    stream.state = None
    assert stream.state is None
    assert_same(stream(x), model(x)[0])


@pytest.mark.parametrize("bad", [np.zeros((4, 2, 2)), (np.zeros((4, 2, 2)),), "state", 3,
                                 (1, 2, 3)])
def test_set_state_of_wrong_type(bad):
    stream = _model().stream()
    with pytest.raises(TypeError, match="state"):
        stream.state = bad


def test_state_of_wrong_shape_fails_when_set():
    model = _model(2, 2)
    stream = model.stream()
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) must have shape \(2, B, 2\)"
                                         r".*got \(1, 3, 2\)"):
        stream.state = (np.zeros((1, 3, 2)), np.zeros((1, 3, H)))   # one layer's worth
    with pytest.raises(ValueError, match=r"state\[0\] \(h\) and state\[1\] \(c\) must "
                                         r"agree on the batch"):
        stream.state = (np.zeros((2, 3, 2)), np.zeros((2, 4, H)))


def test_state_whose_batch_differs_from_the_chunk_names_state():
    model = _model(2, 2)
    stream = model.stream()
    stream.state = (np.zeros((2, 3, 2)), np.zeros((2, 3, H)))
    with pytest.raises(ValueError, match=r"state\[0\] \(h0\) must have shape \(2, 4, 2\)"):
        stream(np.zeros((4, 4, D)))


@pytest.mark.parametrize("value, error, message", [
    ((np.zeros((1, 2), complex), np.zeros((1, H))), TypeError, r"state\[0\] \(h\) must be real"),
    ((np.zeros((1, 2)), np.array([["a"] * H])), TypeError, r"state\[1\] \(c\) must hold real"),
    ((np.zeros((1, 2)),), TypeError, r"state must be a tuple \(h0, c0\) of 2 arrays, got a "
                                      r"tuple of 1 items"),
    (np.zeros((2, 1, 2)), TypeError, "state must be a tuple"),
])
def test_state_is_checked_as_hx_is(value, error, message):
    model = _model(1, 2)
    stream = model.stream()
    before = stream(np.ones((3, D)))
    with pytest.raises(error, match=message):
        stream.state = value
    # A refused state changes nothing: the stream goes on from where it was.
    expected = np.concatenate([before, model(np.ones((3, D)), model(np.ones((3, D)))[1])[0]])
    np.testing.assert_allclose(np.concatenate([before, stream(np.ones((3, D)))]), expected,
                               rtol=1e-6, atol=1e-6)


def test_a_stream_shared_between_threads_stays_consistent():
    """Two threads feed one stream while a third resets it: no error, and every
    output is one that a single-threaded stream could have produced."""
    import threading

    model = _model(2, 2)
    stream = model.stream()
    chunk = np.ones((200, 3, D))  # long enough that the kernel runs without the GIL a while
    errors = []

    def feed():
        try:
            for _ in range(100):
                out = stream(chunk)
                assert out.shape == (200, 3, 2) and np.isfinite(out).all()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    def reset():
        try:
            for _ in range(2000):
                stream.reset()
                stream.state = (np.zeros((2, 3, 2)), np.zeros((2, 3, H)))
                stream.state
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=feed), threading.Thread(target=feed),
               threading.Thread(target=reset)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_batch_size_fixed_until_reset():
    rng = np.random.default_rng(4)
    model = _model()
    stream = model.stream()
    stream(random_input(rng, model, 3, 2))
    with pytest.raises(ValueError, match=r"chunk must continue the stream's batch size 2, "
                                         r"got batch size 4 of shape \(3, 4, 3\)"):
        stream(random_input(rng, model, 3, 4))
    with pytest.raises(ValueError, match="got unbatched input of shape"):
        stream(random_input(rng, model, 3, None))
    stream.reset()
    x = random_input(rng, model, 3, 4)
    assert_same(stream(x), model(x)[0])


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_and_batch_first_layouts(batch_first, dtype):
    rng = np.random.default_rng(5)
    model = _model(2, 2, batch_first=batch_first, dtype=dtype)
    for batch in (None, 3):
        x = random_input(rng, model, 7, batch, dtype)
        stream = model.stream()
        chunks = _split(model, x, [2, 3])
        outs = [stream(chunk) for chunk in chunks]
        axis = _time_axis(model, x)
        assert [o.shape[axis] for o in outs] == [2, 1, 4]
        assert (stream.state[0].shape, stream.state[1].shape) == state_shapes(model, batch)
        _assert_matches((np.concatenate(outs, axis=axis), stream.state), model(x))


def test_weights_changed_between_chunks_take_effect():
    rng = np.random.default_rng(6)
    model = _model(2, 2)
    x = random_input(rng, model, 6, 2)
    stream = model.stream()
    first = stream(x[:3])
    state = stream.state
    model.weight_hh_l1 *= 0.5
    second = stream(x[3:])
    assert_results_same((second, stream.state), model(x[3:], state))   # the new weights
    assert first.shape == (3, 2, 2)


def test_float_input_to_float32_stream():
    rng = np.random.default_rng(7)
    model = _model(1, 0, dtype=np.float32)
    stream = model.stream()
    out = stream(rng.standard_normal((4, 2, D)))   # float64 in
    assert out.dtype == np.float32
    assert stream.state[0].dtype == np.float32


def test_padding_mode_does_not_matter_without_lengths():
    rng = np.random.default_rng(8)
    model = _model(2, 2, padding="carry")
    x = random_input(rng, model, 5, 2)
    stream = model.stream()
    _assert_matches((_feed(stream, _split(model, x, [1, 4]), model, x), stream.state),
                    model(x))


@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_refused(layers):
    model = cylstm.LSTM(D, H, layers, bidirectional=True, seed=0)
    with pytest.raises(ValueError, match="bidirectional"):
        model.stream()
    with pytest.raises(ValueError, match="bidirectional"):
        cylstm.LSTMStream(model)


def test_bad_weights_are_refused_before_the_stream_sees_them():
    """A weight is checked when it is assigned: the stream never runs on it."""
    rng = np.random.default_rng(10)
    model = _model(2, 2)
    x = random_input(rng, model, 4, 2)
    stream = model.stream()
    stream(x[:2])
    before = stream.state
    with pytest.raises(ValueError, match=r"weight_hh_l1 must have shape \(20, 2\)"):
        model.weight_hh_l1 = np.zeros((4 * H, 3))
    assert_results_same((stream(x[2:]), stream.state), model(x[2:], before))


