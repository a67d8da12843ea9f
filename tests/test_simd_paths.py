"""Every SIMD path of the gate math that this CPU can run gives the reference's numbers.

A wheel carries the cells compiled for several instruction sets and picks one at import;
a CPU the tests never saw would otherwise run code no test ran. Here each path the CPU
runs is forced: per kernel call (`simd=`), and for the whole model, training included,
in a child process that selects it by CYLSTM_SIMD.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cylstm import _lstm
from reference import lstm_reference
from testutil import tol

TESTS = Path(__file__).resolve().parent
RUNNABLE = _lstm.simd_paths()


def test_the_paths_are_named_and_the_default_is_the_best_the_cpu_runs():
    assert set(RUNNABLE) <= set(_lstm.SIMD_PATHS)
    assert RUNNABLE[0] == _lstm.simd_path() or os.environ.get(_lstm.SIMD_ENVIRONMENT_VARIABLE)
    assert _lstm.SIMD_PATHS[0] in RUNNABLE  # the most portable path runs everywhere
    # fastest first: in the order of SIMD_PATHS, reversed
    positions = [_lstm.SIMD_PATHS.index(name) for name in RUNNABLE]
    assert positions == sorted(positions, reverse=True)


def test_an_unknown_or_unrunnable_path_is_refused():
    x = np.zeros((1, 1, 2), np.float32)
    args = (x, np.zeros((8, 2), np.float32), np.zeros((8, 2), np.float32),
            np.zeros(8, np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32),
            np.zeros((1, 1, 2), np.float32))
    with pytest.raises(ValueError, match="simd must be one of"):
        _lstm.forward_layer(*args, simd="neon9000")
    for name in set(_lstm.SIMD_PATHS) - set(RUNNABLE):
        with pytest.raises(ValueError, match="cannot run it"):
            _lstm.forward_layer(*args, simd=name)


@pytest.mark.parametrize("simd", RUNNABLE)
@pytest.mark.parametrize("strategy", ["rows", "columns"])
@pytest.mark.parametrize("proj, with_lengths, reverse",
                         [(0, False, False), (3, True, False), (0, True, True)])
def test_each_path_forward_and_backward(simd, strategy, proj, with_lengths, reverse, dtype):
    """Forward against the float64 reference; backward against the most portable path."""
    rng = np.random.default_rng(11)
    T, B, D, H = 7, 4, 5, 70  # H spans two blocks of the cell's SIMD loop
    P = proj or H
    x = rng.standard_normal((T, B, D)).astype(dtype)
    w_ih = (0.5 * rng.standard_normal((4 * H, D))).astype(dtype)
    w_hh = (0.5 * rng.standard_normal((4 * H, P))).astype(dtype)
    bias = (0.5 * rng.standard_normal(4 * H)).astype(dtype)
    w_hr = (0.5 * rng.standard_normal((P, H))).astype(dtype) if proj else None
    h0 = (0.5 * rng.standard_normal((B, P))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    lengths = np.array([7, 3, 5, 1]) if with_lengths else None
    expected, expected_h, expected_c = lstm_reference(
        x, w_ih, w_hh, bias, None, h0, c0, w_hr=w_hr, lengths=lengths, reverse=reverse)

    def forward(path):
        h, c, out = h0.copy(), c0.copy(), np.zeros((T, B, P), dtype)
        act, cells = np.zeros((T, B, 4 * H), dtype), np.zeros((T, B, H), dtype)
        _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out, w_hr=w_hr, lengths=lengths,
                            reverse=reverse, keep_act=act, keep_c=cells, strategy=strategy,
                            simd=path)
        return h, c, out, act, cells

    h, c, out, act, cells = forward(simd)
    np.testing.assert_allclose(out, expected, **tol(dtype))
    np.testing.assert_allclose(h, expected_h, **tol(dtype))
    np.testing.assert_allclose(c, expected_c, **tol(dtype))

    def backward(path, out, act, cells):
        grad_out = np.random.default_rng(3).standard_normal((T, B, P)).astype(dtype)
        grads = dict(grad_x=np.zeros((T, B, D), dtype), grad_h0=np.empty((B, P), dtype),
                     grad_c0=np.empty((B, H), dtype), grad_w_ih=np.empty((4 * H, D), dtype),
                     grad_w_hh=np.empty((4 * H, P), dtype), grad_bias=np.empty(4 * H, dtype))
        extra = dict(grad_w_hr=np.empty((P, H), dtype)) if proj else {}
        _lstm.backward_layer(x, w_ih, w_hh, h0, c0, out, act, cells, grad_out,
                             np.zeros((B, P), dtype), np.zeros((B, H), dtype),
                             *grads.values(), w_hr=w_hr, lengths=lengths, reverse=reverse,
                             simd=path, **extra)
        return {**grads, **extra}

    portable = _lstm.SIMD_PATHS[0]
    gradients = backward(simd, out, act, cells)
    expected_gradients = backward(portable, *forward(portable)[2:])
    for name, value in gradients.items():
        np.testing.assert_allclose(value, expected_gradients[name], rtol=1e-4 if
                                   dtype == np.float32 else 1e-11, atol=1e-5 if
                                   dtype == np.float32 else 1e-12, err_msg=name)


VARIANTS = [
    dict(peephole=True, clip=0.9),
    dict(peephole=True, input_forget=True),
    dict(activations=(("hard_sigmoid", 0.3, 0.4), ("softsign", 0.0, 0.0),
                      ("scaled_tanh", 1.5, 0.7))),
    dict(activations=(("sigmoid", 0.0, 0.0), ("elu", 0.9, 0.0), ("softplus", 0.0, 0.0))),
]


@pytest.mark.parametrize("simd", RUNNABLE)
@pytest.mark.parametrize("strategy", ["rows", "columns"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_path_runs_the_variant_cells(simd, strategy, variant, dtype):
    """The variant cells of each path: forward against the float64 reference, the
    backward (gradients of the pre-activations and the peepholes) against the most
    portable path's."""
    rng = np.random.default_rng(5)
    T, B, D, H = 6, 3, 4, 70
    x = rng.standard_normal((T, B, D)).astype(dtype)
    w_ih, w_hh = (0.3 * rng.standard_normal((4 * H, n)).astype(dtype) for n in (D, H))
    bias = (0.5 * rng.standard_normal(4 * H)).astype(dtype)
    peephole = (0.5 * rng.standard_normal(3 * H)).astype(dtype) \
        if variant.get("peephole") else None
    options = {**variant, "peephole": peephole}
    reference_options = {key: value for key, value in options.items() if key != "peephole"}
    expected, _, _ = lstm_reference(x, w_ih, w_hh, bias, None, peephole=peephole,
                                    **reference_options)

    def run(path):
        h, c, out = np.zeros((B, H), dtype), np.zeros((B, H), dtype), np.zeros((T, B, H), dtype)
        act, cells = np.zeros((T, B, 4 * H), dtype), np.zeros((T, B, H), dtype)
        _lstm.forward_layer(x, w_ih, w_hh, bias, h, c, out, keep_act=act, keep_c=cells,
                            strategy=strategy, simd=path, **options)
        grads = [np.zeros((T, B, D), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype),
                 np.empty((4 * H, D), dtype), np.empty((4 * H, H), dtype),
                 np.empty(4 * H, dtype)]
        grad_peephole = np.zeros(3 * H, dtype) if peephole is not None else None
        _lstm.backward_layer(x, w_ih, w_hh, np.zeros((B, H), dtype), np.zeros((B, H), dtype),
                             out, act, cells, np.ones((T, B, H), dtype),
                             np.zeros((B, H), dtype), np.zeros((B, H), dtype), *grads,
                             grad_peephole=grad_peephole, simd=path, **options)
        return out, grads + ([grad_peephole] if peephole is not None else [])

    out, grads = run(simd)
    np.testing.assert_allclose(out, expected, **tol(dtype))
    _, portable = run(_lstm.SIMD_PATHS[0])
    for got, want in zip(grads, portable):
        np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == np.float32 else 1e-11,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("simd", [path for path in RUNNABLE if path != _lstm.simd_path()])
def test_each_other_path_runs_the_model_tests(simd):
    """The model, every strategy and option, and training (finite differences, torch's
    autograd) in a child process that runs `simd` for everything."""
    env = {**os.environ, _lstm.SIMD_ENVIRONMENT_VARIABLE: simd}
    check = subprocess.run(
        [sys.executable, "-c", "from cylstm import _lstm; print(_lstm.simd_path())"],
        env=env, capture_output=True, text=True, timeout=120)
    assert check.stdout.strip() == simd, check.stderr
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(TESTS / "test_plans.py"), str(TESTS / "test_training.py"),
         str(TESTS / "test_variants.py"), "-k",
         "every_strategy or finite_differences or torch_autograd or variant"],
        env=env, capture_output=True, text=True, timeout=600, cwd=TESTS.parent.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_a_bad_environment_variable_warns_and_keeps_the_best_path():
    env = {**os.environ, _lstm.SIMD_ENVIRONMENT_VARIABLE: "quantum"}
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "from cylstm import _lstm; print(_lstm.simd_path())"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == RUNNABLE[0]
    assert "CYLSTM_SIMD" in result.stderr and "RuntimeWarning" in result.stderr
