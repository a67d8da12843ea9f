"""ONNX out: an ONNX model of a (config, state_dict), and running one with ONNX's shapes.

onnxruntime (1.32, CPU) runs its LSTM in float32 only and only with layout=0, so
`onnx_from_parts` (LSTM.to_onnx) always writes layout=0 nodes; a batch_first model gets
Transposes around them. The gate blocks are reordered to ONNX's i, o, f, c (see onnx_io).
`onnx` is imported inside the functions that need it; `run_onnx_semantics` needs NumPy only.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._atomic import atomic_write
from ._onnx_variants import PEEPHOLE_ORDER, variant_attributes
from ._params import checked_state_dict, config_from_dict
from .onnx_io import (
    _MAX_MODEL_BYTES,
    _ONNX_GATES_FROM_TORCH,
    _import_onnx,
    _reorder_gates,
    _suffix,
)

__all__ = ["onnx_from_parts", "run_onnx_semantics"]

_DEFAULT_OPSET = 17
_MIN_OPSET = 14  # LSTM-14 is the version that knows `layout`


def onnx_from_parts(config: Mapping[str, Any], state_dict: Mapping[str, Any],
                    path: Union[str, os.PathLike[str], None] = None,
                    opset: Optional[int] = None, *, sequence_lens: bool = True,
                    initial_state: bool = False, description: str = "cylstm.LSTM") -> Any:
    """An onnx.ModelProto that computes the model of `config` and `state_dict` (and
    saved to `path` if given); `description` becomes the graph's doc string.

    One ONNX LSTM node per layer (layout=0, which is what onnxruntime runs), with W, R and
    B (B only if model.bias) reordered to ONNX's gate order i, o, f, c, and the variants
    as the operator has them: P (peepholes, ONNX order i, o, f), clip, input_forget,
    activations with activation_alpha/activation_beta (float32 attributes), and
    direction="reverse" for reverse=True. go_backwards has no attribute: the graph reverses
    each row within its length in front of the first node (ReverseSequence over
    sequence_lens; without sequence_lens, Slice with step -1) and leaves the output in the
    order processed, as the model does. dropout and recurrent_dropout act in training only
    and are not written.

    Graph inputs:
      X (T, B, input_size), or (B, T, input_size) for a batch_first model; T and B symbolic.
      sequence_lens (B,) int32, the `lengths` of model(x, lengths=...). It is a required
        input (onnxruntime requires every declared graph input to be fed): feed
        np.full(B, T, np.int32) for full-length rows, or pass sequence_lens=False to write
        a graph without it.
      initial_h, initial_c (num_layers * num_directions, B, hidden_size), only with
        initial_state=True: hx of model(x, hx).
    Graph outputs, as model(...) returns them:
      Y (T, B, num_directions * hidden_size) ((B, T, ...) batch_first),
      Y_h, Y_c (num_layers * num_directions, B, hidden_size).

    opset defaults to 17; anything from 14 to what the installed onnx knows is accepted.
    Float64 models are written as float64 graphs, which are valid ONNX but onnxruntime's
    CPU LSTM does not run them (it supports float32 only).
    Raises NotImplementedError for proj_size > 0 (ONNX's LSTM has no projection) and for
    padding="carry" (ONNX outputs zeros past sequence_lens).

    The weights are checked as load_state_dict checks them before anything is built or
    written (a weight of the wrong shape raises its ValueError and writes no file). The
    file is written atomically: a failure leaves whatever was at `path` before. All
    weights are stored inside the file, so a model whose graph exceeds protobuf's 2 GB
    limit raises ValueError (ONNX would need external data files; cylstm does not write
    them, as a pair of files cannot be replaced atomically).

    Examples
    --------
    >>> import cylstm
    >>> from cylstm.onnx_export import onnx_from_parts
    >>> model = cylstm.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    >>> proto = onnx_from_parts(model.config(), model.state_dict(), initial_state=True)
    >>> [node.op_type for node in proto.graph.node if node.op_type == "LSTM"]
    ['LSTM', 'LSTM']
    >>> [graph_input.name for graph_input in proto.graph.input]
    ['X', 'sequence_lens', 'initial_h', 'initial_c']
    >>> onnx_from_parts({**model.config(), "padding": "carry"}, model.state_dict())
    Traceback (most recent call last):
    ...
    NotImplementedError: ...
    """
    onnx = _import_onnx("to_onnx")
    spec = config_from_dict(config)
    _check_exportable(spec)
    opset = _check_opset(onnx, opset)
    # The model's parameters and configuration as attributes, checked.
    model = SimpleNamespace(**spec._asdict(), num_directions=spec.num_directions,
                            **checked_state_dict(spec, state_dict))
    graph = _build_graph(onnx, model, bool(sequence_lens), bool(initial_state), description)
    opset_imports = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(graph, opset_imports=opset_imports,
                                   producer_name="cylstm", producer_version=_version())
    # The oldest IR version that has this opset, so older runtimes load the file too.
    proto.ir_version = onnx.helper.find_min_ir_version_for(opset_imports)
    size = proto.ByteSize()
    if size > _MAX_MODEL_BYTES:
        raise ValueError(
            f"the ONNX model would take {size} bytes, more than protobuf's 2 GB limit; "
            "cylstm writes weights inside the .onnx file only")
    onnx.checker.check_model(proto)
    if path is not None:
        data = proto.SerializeToString()
        with atomic_write(path) as file:
            file.write(data)
    return proto


def _version():
    from ._version import __version__
    return __version__


def _check_exportable(model):
    if model.proj_size:
        raise NotImplementedError(
            f"proj_size={model.proj_size} (an LSTM with projection, LSTMP) cannot be "
            "exported: ONNX's LSTM operator has no projection")
    if model.padding != "zeros":
        raise NotImplementedError(
            f"padding={model.padding!r} cannot be exported: ONNX's LSTM outputs zeros past "
            "sequence_lens (padding='zeros')")


def _check_opset(onnx, opset):
    if opset is None:
        return _DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not _MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"opset must be an int from {_MIN_OPSET} to {newest} (the newest the installed "
            f"onnx knows), got {opset!r}")
    return int(opset)


def _onnx_layer_weights(model, layer):
    """ONNX's W, R, B (None without bias) and P (None without peepholes) for one layer."""
    W, R, B, P = [], [], [], []
    for direction in range(model.num_directions):
        suffix = _suffix(layer, direction)
        params = {name: np.asarray(getattr(model, f"{name}_{suffix}"))
                  for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh")
                                                            if model.bias else ())}
        W.append(_reorder_gates(params["weight_ih"], _ONNX_GATES_FROM_TORCH))
        R.append(_reorder_gates(params["weight_hh"], _ONNX_GATES_FROM_TORCH))
        if model.bias:
            B.append(np.concatenate([_reorder_gates(params["bias_ih"], _ONNX_GATES_FROM_TORCH),
                                     _reorder_gates(params["bias_hh"], _ONNX_GATES_FROM_TORCH)]))
        if model.peepholes:
            P.append(_reorder_gates(getattr(model, f"weight_peephole_{suffix}"), PEEPHOLE_ORDER))
    W, R = np.stack(W).astype(model.dtype), np.stack(R).astype(model.dtype)
    return W, R, *(np.stack(arrays).astype(model.dtype) if arrays else None
                   for arrays in (B, P))


def _reverse_rows(onnx, nodes, initializers, name, with_sequence_lens):
    """The name of (T, B, D) `name` with each row reversed within its sequence_lens (all of
    T without sequence_lens): the input a go_backwards model's first layer reads."""
    helper = onnx.helper
    if with_sequence_lens:  # ReverseSequence takes int64 lengths
        nodes += [helper.make_node("Cast", ["sequence_lens"], ["sequence_lens_int64"],
                                   to=onnx.TensorProto.INT64, name="lengths_int64"),
                  helper.make_node("ReverseSequence", [name, "sequence_lens_int64"],
                                   ["X_backwards"], batch_axis=1, time_axis=0,
                                   name="go_backwards")]
        return "X_backwards"
    initializers += [onnx.numpy_helper.from_array(np.array([value], np.int64), key)
                     for key, value
                     in (("last_step", -1), ("before_first", -2**63), ("time_axis", 0),
                         ("step_back", -1))]
    nodes.append(helper.make_node("Slice", [name, "last_step", "before_first", "time_axis",
                                            "step_back"], ["X_backwards"], name="go_backwards"))
    return "X_backwards"


def _build_graph(onnx, model, with_sequence_lens, with_initial_state, description):
    """The GraphProto: [Transpose] -> (LSTM -> Transpose -> Reshape) per layer -> [Transpose]."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    H, dirs, L = model.hidden_size, model.num_directions, model.num_layers
    direction = ("bidirectional" if model.bidirectional
                 else "reverse" if model.reverse else "forward")
    nodes = []
    initializers = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "merge_directions")]
    layer_input = "X"
    if model.batch_first:  # ONNX Runtime runs layout=0 only: go time-major and back
        nodes.append(helper.make_node("Transpose", ["X"], ["X_time_major"], perm=[1, 0, 2],
                                      name="to_time_major"))
        layer_input = "X_time_major"
    if model.go_backwards:  # each row reversed within its length, once, before layer 0
        layer_input = _reverse_rows(onnx, nodes, initializers, layer_input, with_sequence_lens)
    variants = variant_attributes(model)
    for layer in range(L):
        W, R, B, P = _onnx_layer_weights(model, layer)
        names = {key: f"{key}_l{layer}" for key in ("W", "R", "B", "P")}
        initializers += [numpy_helper.from_array(W, names["W"]),
                         numpy_helper.from_array(R, names["R"])]
        if B is not None:
            initializers.append(numpy_helper.from_array(B, names["B"]))
        if P is not None:
            initializers.append(numpy_helper.from_array(P, names["P"]))
        states = _layer_initial_states(helper, numpy_helper, nodes, initializers, layer, dirs,
                                       L) if with_initial_state else ("", "")
        lstm_inputs = [layer_input, names["W"], names["R"], names["B"] if B is not None else "",
                       "sequence_lens" if with_sequence_lens else "", *states,
                       names["P"] if P is not None else ""]
        while lstm_inputs[-1] == "":  # trailing optional inputs are simply left out
            lstm_inputs.pop()
        last = layer == L - 1
        y_h, y_c = ("Y_h", "Y_c") if L == 1 else (f"Y_h_l{layer}", f"Y_c_l{layer}")
        nodes.append(helper.make_node("LSTM", lstm_inputs, [f"Y_l{layer}", y_h, y_c],
                                      name=f"lstm_l{layer}", hidden_size=H,
                                      direction=direction, layout=0, **variants))
        # (T, dirs, B, H) -> (T, B, dirs, H) -> (T, B, dirs * H): cylstm's output layout
        nodes.append(helper.make_node("Transpose", [f"Y_l{layer}"], [f"Y_l{layer}_TBdH"],
                                      perm=[0, 2, 1, 3], name=f"directions_last_l{layer}"))
        layer_output = "Y" if last and not model.batch_first else f"output_l{layer}"
        nodes.append(helper.make_node("Reshape", [f"Y_l{layer}_TBdH", "merge_directions"],
                                      [layer_output], name=f"merge_directions_l{layer}"))
        layer_input = layer_output
    if model.batch_first:
        nodes.append(helper.make_node("Transpose", [layer_input], ["Y"], perm=[1, 0, 2],
                                      name="to_batch_first"))
    if L > 1:
        for name in ("Y_h", "Y_c"):
            nodes.append(helper.make_node("Concat", [f"{name}_l{k}" for k in range(L)], [name],
                                          axis=0, name=f"concat_{name}"))

    inputs, outputs = _graph_inputs_and_outputs(onnx, model, with_sequence_lens,
                                                with_initial_state)
    return helper.make_graph(nodes, "cylstm_lstm", inputs, outputs, initializers,
                             doc_string=description)


def _graph_inputs_and_outputs(onnx, model, with_sequence_lens, with_initial_state):
    """Value infos with symbolic T and B, laid out as model(...) takes and returns them."""
    value_info = onnx.helper.make_tensor_value_info
    element = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(model.dtype))
    sequence_axes = ["B", "T"] if model.batch_first else ["T", "B"]
    state_shape = [model.num_layers * model.num_directions, "B", model.hidden_size]
    inputs = [value_info("X", element, sequence_axes + [model.input_size])]
    if with_sequence_lens:
        inputs.append(value_info("sequence_lens", onnx.TensorProto.INT32, ["B"]))
    if with_initial_state:
        inputs += [value_info(name, element, state_shape) for name in ("initial_h", "initial_c")]
    outputs = [value_info("Y", element,
                          sequence_axes + [model.num_directions * model.hidden_size]),
               value_info("Y_h", element, state_shape), value_info("Y_c", element, state_shape)]
    return inputs, outputs


def _layer_initial_states(helper, numpy_helper, nodes, initializers, layer, dirs, layers):
    """Names of this layer's (dirs, B, H) slices of initial_h and initial_c."""
    if layers == 1:
        return "initial_h", "initial_c"
    starts, ends, axes = f"state_start_l{layer}", f"state_end_l{layer}", "state_axis"
    initializers += [numpy_helper.from_array(np.array([layer * dirs], np.int64), starts),
                     numpy_helper.from_array(np.array([(layer + 1) * dirs], np.int64), ends)]
    if layer == 0:
        initializers.append(numpy_helper.from_array(np.array([0], np.int64), axes))
    names = []
    for state in ("initial_h", "initial_c"):
        name = f"{state}_l{layer}"
        nodes.append(helper.make_node("Slice", [state, starts, ends, axes], [name],
                                      name=f"slice_{name}"))
        names.append(name)
    return tuple(names)


# -- running with ONNX's shapes ------------------------------------------------------------

def run_onnx_semantics(model: Any, X: ArrayLike, sequence_lens: Optional[ArrayLike] = None,
                       initial_h: Optional[ArrayLike] = None,
                       initial_c: Optional[ArrayLike] = None,
                       ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Run a one-layer `model` as ONNX's LSTM operator would: (Y, Y_h, Y_c) in ONNX layouts.

    A drop-in for an onnxruntime session over one LSTM node; layout is 1 if
    model.batch_first, else 0:
      X          layout 0: (T, B, D)              layout 1: (B, T, D)
      initial_h, initial_c, Y_h, Y_c
                 layout 0: (dirs, B, H)           layout 1: (B, dirs, H)
      Y          layout 0: (T, dirs, B, H)        layout 1: (B, T, dirs, H)
    sequence_lens (B,) ints in [1, T]; Y is zero past each row's length. A missing
    initial_h or initial_c is zeros. Needs only NumPy.

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> from cylstm.onnx_export import run_onnx_semantics
    >>> model = cylstm.LSTM(3, 4, bidirectional=True, padding="carry", seed=0)
    >>> Y, Y_h, Y_c = run_onnx_semantics(model, np.ones((5, 2, 3)), sequence_lens=[5, 2])
    >>> Y.shape, Y_h.shape
    ((5, 2, 2, 4), (2, 2, 4))
    >>> bool(Y[2:, :, 1].any())                  # zeros past the length, whatever the padding
    False
    """
    if model.num_layers != 1:
        raise ValueError(
            f"run_onnx_semantics runs one ONNX LSTM node, i.e. a one-layer model; this model "
            f"has num_layers={model.num_layers}")
    if model.proj_size:
        raise NotImplementedError(
            f"proj_size={model.proj_size}: ONNX's LSTM operator has no projection")
    if model.go_backwards:
        raise NotImplementedError(
            "go_backwards=True (Keras) is no ONNX LSTM node: to_onnx writes it as a "
            "ReverseSequence in front of the node")
    layout = 1 if model.batch_first else 0
    if np.ndim(X) != 3:
        raise ValueError(f"X must be 3-D ({'B, T' if layout else 'T, B'}, input_size), got "
                         f"shape {np.shape(X)}")
    batch = np.shape(X)[0 if layout else 1]
    dirs, H = model.num_directions, model.hidden_size
    hx = _onnx_initial_state(initial_h, initial_c, layout, dirs, batch, H)
    output, (h_n, c_n) = model(X, hx, lengths=sequence_lens)
    per_direction = output.reshape(output.shape[:2] + (dirs, H))
    if sequence_lens is not None and model.padding != "zeros":
        _zero_past_lengths(per_direction, sequence_lens, layout)
    if layout == 0:
        return (np.ascontiguousarray(per_direction.transpose(0, 2, 1, 3)), h_n, c_n)
    return (per_direction, np.ascontiguousarray(h_n.transpose(1, 0, 2)),
            np.ascontiguousarray(c_n.transpose(1, 0, 2)))


def _onnx_initial_state(initial_h, initial_c, layout, dirs, batch, H):
    """hx = (h0, c0) in cylstm's (dirs, B, H) from ONNX's layout, or None if both are absent."""
    if initial_h is None and initial_c is None:
        return None
    expected = (batch, dirs, H) if layout else (dirs, batch, H)
    states = []
    for name, value in (("initial_h", initial_h), ("initial_c", initial_c)):
        if value is None:
            states.append(np.zeros((dirs, batch, H)))
            continue
        if np.shape(value) != expected:
            raise ValueError(
                f"{name} must have shape {expected} for layout={layout}, got {np.shape(value)}")
        states.append(np.swapaxes(value, 0, 1) if layout else value)
    return tuple(states)


def _zero_past_lengths(per_direction, lengths, layout):
    """ONNX outputs zeros past sequence_lens (undo padding='carry')."""
    for row, length in enumerate(np.asarray(lengths)):
        if layout:
            per_direction[row, length:] = 0
        else:
            per_direction[length:, row] = 0
