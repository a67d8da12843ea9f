"""Scratch memory of the forward pass does not grow with the sequence length."""
import tracemalloc

import numpy as np

import cylstm

# What a call may allocate besides its output: gate scratch (bounded by a
# time chunk), the state copies, the combined bias. Independent of T.
SMALL_CONSTANT = 2 * 1024 * 1024


def peak_extra_bytes(model, x):
    """Peak bytes allocated by model(x) beyond its output (NumPy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        output, _ = model(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before - output.nbytes, output


def test_million_step_sequence_needs_output_plus_constant():
    model = cylstm.LSTM(2, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((1_000_000, 1, 2)).astype(np.float32)
    extra, output = peak_extra_bytes(model, x)
    assert output.shape == (1_000_000, 1, 4)
    assert np.all(np.isfinite(output))
    assert extra < SMALL_CONSTANT, f"forward pass used {extra} bytes of scratch"


def test_scratch_is_the_same_for_short_and_long_sequences():
    model = cylstm.LSTM(16, 32, seed=1)
    rng = np.random.default_rng(1)
    short = rng.standard_normal((100, 8, 16)).astype(np.float32)
    long = rng.standard_normal((20_000, 8, 16)).astype(np.float32)
    extra_short, _ = peak_extra_bytes(model, short)
    extra_long, _ = peak_extra_bytes(model, long)
    assert extra_long < SMALL_CONSTANT
    # Tracks the chunked scratch, not T: 200x more steps, at most 2x the scratch.
    assert extra_long <= 2 * extra_short + 64 * 1024
