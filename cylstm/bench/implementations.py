"""What the benchmark times: one builder per implementation and section.

A builder takes (case, threads) and returns either a function that runs one timed call and
returns what is compared with cylstm's (an ndarray, or a dict of them), or a ``StepBlock``; it
raises ImportError when its framework is not installed. Every implementation gets the weights
of the case's cylstm model: torch through ``model.to_torch()``, ONNX Runtime through
``model.to_onnx()``, so that the benchmark times the exports users get.

Main table:

``cylstm``
    The public model call, ``model(x)``: validation, allocation and the kernel.
``kernel``
    ``cylstm._lstm.forward_layer`` with preallocated buffers and the strategy the model's
    plan chose for this shape: the compiled kernel alone.
``floor``
    The kernel with ``_gate_math=False``: only the BLAS calls (one input projection gemm
    per time chunk, one recurrent product per step), in each strategy the kernel has, and
    the fastest of them on this machine. No LSTM over these BLAS calls can be faster, so
    cylstm/floor is what the gate math, the Python layer and the plan's choice cost. Its
    output is not an LSTM's and is not checked.
``numpy``
    ``cylstm.numpy_lstm.lstm_numpy``: one big input matmul, a Python loop over time.
``torch``
    ``model.to_torch()`` under ``torch.inference_mode()``.
``onnxruntime``
    ``model.to_onnx()`` run by ONNX Runtime's CPU provider.
"""

import gc
import time

import numpy as np

from ..numpy_lstm import lstm_numpy
from .configs import DTYPE
from .timing import StepBlock


def _cylstm_threads(case, threads):
    """Give the cylstm model of `case` its own threading for an n-thread cell.

    With n > 1 cylstm runs one time loop over n-thread BLAS (its default), or, when the run
    asked for it (``case.split_threads``, ``--split``), ``model.num_threads = n``: the batch
    (or, at batch 1, the two directions) split over n threads with single-threaded BLAS.
    """
    split = threads > 1 and case.split_threads
    case.model.num_threads = threads if split else None


def build_cylstm(case, threads):
    _cylstm_threads(case, threads)
    model, x = case.model, case.x

    def call():
        return model(x)[0]

    return call


def build_kernel(case, threads, gate_math=True, strategy=None):
    """The bare kernel call; `strategy` None: the one the model's plan runs."""
    from .. import _plan
    from .._lstm import forward_layer

    T, B, D, H = case.shape
    x, w_ih, w_hh, bias = case.x, case.w_ih, case.w_hh, case.bias
    h = np.zeros((B, H), DTYPE)
    c = np.zeros((B, H), DTYPE)
    out = np.empty((T, B, H), DTYPE)
    # Planned now (a race on a problem of the shape in "measure" mode), not in the timed calls.
    _plan.PLANNER.plan(_plan.shape_of(DTYPE, T, B, D, H, 0))
    options = dict(_plan.kernel_options(np.dtype(DTYPE), T, B, D, H, 0))
    if strategy is not None:
        options["strategy"] = strategy

    def call():
        h.fill(0)
        c.fill(0)
        forward_layer(x, w_ih, w_hh, bias, h, c, out, _gate_math=gate_math, **options)
        return out

    call.strategy = options["strategy"]
    return call


def build_floor(case, threads):
    """The BLAS-only loop in its fastest strategy here (each timed on two calls)."""
    from .._lstm import STRATEGIES

    best, best_seconds = None, float("inf")
    for strategy in STRATEGIES:
        call = build_kernel(case, threads, gate_math=False, strategy=strategy)
        call()  # warm up
        started = time.perf_counter()
        call()
        call()
        seconds = time.perf_counter() - started
        if seconds < best_seconds:
            best, best_seconds = call, seconds
    return best


def build_numpy(case, threads):
    x, w_ih, w_hh, bias = case.x, case.w_ih, case.w_hh, case.bias

    def call():
        return lstm_numpy(x, w_ih, w_hh, bias)[0]

    return call


def _torch_module(case, threads):
    """The case's model as a torch.nn.LSTM (``model.to_torch()``), torch at `threads`."""
    import torch

    torch.set_num_threads(threads)
    return case.model.to_torch()


def build_torch(case, threads):
    import torch

    lstm = _torch_module(case, threads).eval()
    x = torch.from_numpy(case.x)

    def call():
        with torch.inference_mode():
            y, _ = lstm(x)
        return y.numpy()

    return call


def _ort_session(serialized_model, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(serialized_model, options, providers=["CPUExecutionProvider"])


def build_onnxruntime(case, threads, lengths=None):
    """ONNX Runtime running the model's own export, ``model.to_onnx()``; with `lengths`, the
    graph's ``sequence_lens`` input is fed them."""
    import onnxruntime  # noqa: F401  (ImportError before the model is exported)

    proto = case.model.to_onnx(sequence_lens=lengths is not None)
    session = _ort_session(proto.SerializeToString(), threads)
    feed = {"X": case.x}
    if lengths is not None:
        feed["sequence_lens"] = np.asarray(lengths, np.int32)

    def call():
        return session.run(["Y"], feed)[0]

    return call


# -- section "cells": the plain cell beside the variant cells (peepholes, activations)


def build_peepholes(case, threads):
    """The case's weights in the peephole cell with clip."""
    return _variant_call(case.peephole_model, case, threads)


def build_activations(case, threads):
    """The case's weights with hard_sigmoid gates and softsign candidate and output."""
    return _variant_call(case.activation_model, case, threads)


def build_peepholes_onnxruntime(case, threads):
    """ONNX Runtime running the peephole model's export (its LSTM with P and clip)."""
    import onnxruntime  # noqa: F401  (ImportError before the model is exported)

    proto = case.peephole_model.to_onnx(sequence_lens=False)
    session = _ort_session(proto.SerializeToString(), threads)
    feed = {"X": case.x}

    def call():
        return session.run(["Y"], feed)[0]

    return call


def _variant_call(model, case, threads):
    model.num_threads = threads if threads > 1 and case.split_threads else None
    x = case.x

    def call():
        return model(x)[0]

    return call


# -- section "lengths": cylstm with lengths=, torch packing, ONNX Runtime's sequence_lens


def build_lengths_cylstm(case, threads):
    _cylstm_threads(case, threads)
    model, x, lengths = case.model, case.x, case.lengths

    def call():
        return model(x, lengths=lengths)[0]

    return call


def build_lengths_torch(case, threads):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lstm = _torch_module(case, threads).eval()
    x = torch.from_numpy(case.x)
    lengths = torch.from_numpy(case.lengths.astype(np.int64))
    T = case.shape[0]

    def call():
        with torch.inference_mode():
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            y, _ = lstm(packed)
            y, _ = pad_packed_sequence(y, total_length=T)
        return y.numpy()

    return call


def build_lengths_onnxruntime(case, threads):
    return build_onnxruntime(case, threads, lengths=case.lengths)


# -- section "stream": one time step per call


def build_stream_cylstm(case, threads):
    stream = case.model.stream()
    return StepBlock(stream, stream.reset, case.steps)


def build_stream_torch(case, threads):
    import torch

    lstm = _torch_module(case, threads).eval()
    steps = [torch.from_numpy(x_t) for x_t in case.steps]
    state = [None]

    def step(x_t):
        out, state[0] = lstm(x_t, state[0])
        return out

    def reset():
        state[0] = None

    # One inference_mode block around a whole block of steps: the cheapest way to call torch
    # step by step (entering the context at every step would add to torch's time).
    return StepBlock(step, reset, steps, context=torch.inference_mode)


# -- section "training": forward_train + backward


def build_train_cylstm(case, threads):
    model, x, grad = case.model, case.x, case.grad

    def call():
        output, _, backward = model.forward_train(x)
        grad_x, _, grads = backward(grad)
        return {"output": output, "grad_x": grad_x, **grads}

    return call


def build_train_torch(case, threads):
    import torch

    lstm = _torch_module(case, threads).train()
    x = torch.from_numpy(case.x.copy()).requires_grad_(True)
    grad = torch.from_numpy(case.grad)
    parameters = dict(lstm.named_parameters())

    def call():
        lstm.zero_grad()
        x.grad = None
        output, _ = lstm(x)
        loss = (output * grad).sum()
        loss.backward()
        return {"output": output.detach().numpy(), "grad_x": x.grad.numpy(),
                **{name: p.grad.numpy() for name, p in parameters.items()}}

    return call


def train_peak_mb(case):
    """{"peak_mb": peak memory (MB, 10^6 bytes) NumPy allocates during one cylstm training
    step}: forward_train + backward, measured untimed with tracemalloc (NumPy reports its
    buffers to it)."""
    import tracemalloc

    call = build_train_cylstm(case, 1)
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
        del result
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return {"peak_mb": round((peak - base) / 1e6, 3)}
