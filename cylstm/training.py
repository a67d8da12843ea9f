"""Training: a forward pass that keeps what backpropagation needs, and the backward pass.

    output, (h_n, c_n), backward = model.forward_train(x, hx, lengths)
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, (grad_h_n, grad_c_n))

Both time loops run in C (cylstm/_lstm.pyx: forward_layer with keep_act/keep_c,
backward_layer); this module walks layers and directions.

Memory kept per layer and direction: the gate activations (T x B x 4H; for a
variant cell the clipped pre-activations, from which backward_layer recomputes
activations and derivatives) and the cell states (T x B x H), about T x B x 5H
values, plus each layer's output (T x B x directions x H_out), which the next
layer reads anyway, and copies of the input, the initial state and the
weights, so that changing them before `backward` does not change the
gradients. Every variant trains; gradients are zero where clip bounded a
pre-activation, and a.e. derivatives are used at the kinks of relu-like ones.

Dropout (training only; a model call never drops): `dropout` multiplies the
output of every layer but the last by a mask of 0 and 1 / (1 - p) before the
next layer reads it (torch's); `recurrent_dropout` multiplies h by such a mask
of shape (B, H_out), drawn once per call for each layer and direction and fixed
over the sequence, before the recurrent product only (Keras's). The masks come
from `rng` (SPEC 7: an int seed, a np.random.Generator, or None for fresh
entropy), recurrent masks first, in state order, then the between-layer masks.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _lstm, _walk
from ._params import layer_layout, parameter_shapes
from ._validation import as_real_array, check_shape

if TYPE_CHECKING:
    from ._params import Config
    from ._typing import FloatArray, State, StateLike


def forward_train(model: Any, config: Config, x: ArrayLike, hx: StateLike = None,
                  lengths: Optional[ArrayLike] = None, rng: Any = None,
                  ) -> tuple[FloatArray, State, Backward]:
    """Run `model` on x like `model(x, hx, lengths)`, with dropout drawn from
    `rng`, and return a `Backward` too."""
    call = _walk.prepare(config, x, hx, lengths)
    # Own copies: the caller may overwrite x, hx and the weights before backward.
    call = call._replace(h0=np.array(call.h0), c0=np.array(call.c0))
    x_time_major = np.array(call.x_time_major, order="C")
    steps = x_time_major.shape[0]
    if call.lengths is not None:
        # The weight gradient is one product over all T x B rows: padded steps
        # must hold zeros there, whatever the user padded with (NaN is common).
        x_time_major[_walk.padded_steps(steps, call.lengths)] = 0
    masks = draw_masks(config, rng, *x_time_major.shape[:2])
    weights = _walk.kernel_weights(model, config, copy=True)
    h_n, c_n = np.array(call.h0, order="C"), np.array(call.c0, order="C")  # final states
    _, last_output, layers = _walk.walk(config, weights, x_time_major, list(h_n), list(c_n),
                                        call.lengths, keep=True,
                                        h_masks=masks["recurrent"], dropout_masks=masks["dropout"])

    result = np.array(last_output)  # the user's copy; the kept one stays zero-padded
    if call.lengths is not None and config.padding == "carry":
        _walk.carry_last_valid(result[:, :, :config.output_size], call.lengths)
    if call.batch_first:
        result = np.ascontiguousarray(result.transpose(1, 0, 2))
    if call.unbatched:
        result, h_n, c_n = result[:, 0], h_n[:, 0], c_n[:, 0]
    return result, (h_n, c_n), Backward(config, call, layers, result.shape, masks["dropout"])


def draw_masks(config: Config, rng: Any, steps: int, batch: int) -> dict[str, Any]:
    """{"recurrent": [(B, H_out) per layer and direction] or None, "dropout": [(T, B,
    directions * H_out) per layer but the last] or None}: 0 or 1 / (1 - p)."""
    masks: dict[str, Any] = {"recurrent": None, "dropout": None}
    if not (config.recurrent_dropout or (config.dropout and config.num_layers > 1)):
        return masks
    try:
        generator = np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, "
                        f"got {type(rng).__name__} {rng!r}") from exc
    width = config.output_size
    if config.recurrent_dropout:
        masks["recurrent"] = [
            _bernoulli(generator, config.recurrent_dropout, (batch, width), config.dtype)
            for _ in range(config.num_layers * config.num_directions)]
    if config.dropout and config.num_layers > 1:
        shape = (steps, batch, config.num_directions * width)
        masks["dropout"] = [_bernoulli(generator, config.dropout, shape, config.dtype)
                            for _ in range(config.num_layers - 1)]
    return masks


def _bernoulli(generator, p, shape, dtype):
    """Inverted dropout: 1 / (1 - p) with probability 1 - p, else 0."""
    return np.where(generator.random(shape) >= p, 1 / (1 - p), 0).astype(dtype)


class Backward:
    """The backward pass of one `forward_train`; call it once.

    `backward(grad_output, grad_state=None)` takes dL/d(output) (the shape of
    output) and optionally (dL/dh_n, dL/dc_n), and returns `(grad_x, (grad_h0,
    grad_c0), grads)`: dL/dx in x's shape, dL/dh0 and dL/dc0 in h_n's and
    c_n's shapes, and {parameter name: dL/dparameter} in state_dict order.
    Made by `LSTM.forward_train`.
    """

    def __init__(self, config: Config, inputs: _walk.Call, layers: list[_walk.KeptLayer],
                 output_shape: tuple[int, ...], dropout_masks: Optional[list] = None) -> None:
        self._config = config
        self._inputs = inputs
        self._layers = layers
        self._output_shape = output_shape
        self._dropout_masks = dropout_masks
        self._used = False

    @property
    def masks(self) -> dict[str, FloatArray]:
        """The dropout masks this forward pass drew (0 or 1 / (1 - p)), for
        reproducing it elsewhere: "recurrent_l{k}" (suffix "_reverse") (B,
        H_out), multiplying h before the recurrent product, and "dropout_l{k}"
        (T, B, directions * H_out), time-major, multiplying layer k's output.
        Empty without dropout."""
        config, masks = self._config, {}
        for layer, kept_layer in enumerate(self._layers):
            for direction, kept in enumerate(kept_layer.directions):
                if kept.h_mask is not None:
                    suffix = "_reverse" if direction else ""
                    masks[f"recurrent_l{layer}{suffix}"] = kept.h_mask
        for layer, mask in enumerate(self._dropout_masks or []):
            masks[f"dropout_l{layer}"] = mask
        return {name: np.array(mask, dtype=config.dtype) for name, mask in masks.items()}

    def __call__(self, grad_output: ArrayLike, grad_state: StateLike = None,
                 ) -> tuple[FloatArray, State, dict[str, FloatArray]]:
        """Backpropagate dL/d(output) (and dL/d(h_n, c_n)) through the forward pass.

        Parameters
        ----------
        grad_output : array_like
            dL/d(output), in the shape of output.
        grad_state : (grad_h_n, grad_c_n), optional
            dL/dh_n and dL/dc_n in the shapes of h_n and c_n; zeros if omitted.

        Returns
        -------
        grad_x : ndarray
            dL/dx in x's shape (zero at padded steps).
        (grad_h0, grad_c0) : tuple of ndarray
            dL/dh0 and dL/dc0, in the shapes of h_n and c_n.
        grads : dict of str to ndarray
            {parameter name: dL/dparameter}, in state_dict order.

        Raises
        ------
        RuntimeError
            On a second call: the kept activations are used as scratch.
        TypeError, ValueError
            For gradients of the wrong type or shape, naming them.

        Examples
        --------
        The gradient of sum(output) agrees with a finite difference:

        >>> import numpy as np
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, num_layers=2, seed=0, dtype=np.float64)
        >>> x = np.linspace(-1, 1, 30).reshape(5, 2, 3)
        >>> output, _, backward = model.forward_train(x)
        >>> grad_x, (grad_h0, grad_c0), grads = backward(np.ones_like(output))
        >>> step = np.zeros_like(x)
        >>> step[0, 1, 2] = 1e-6
        >>> difference = (model(x + step)[0].sum() - model(x - step)[0].sum()) / 2e-6
        >>> bool(abs(difference - grad_x[0, 1, 2]) < 1e-8)
        True
        >>> grads["weight_hh_l1"].shape
        (16, 4)
        >>> backward(np.ones_like(output))
        Traceback (most recent call last):
        ...
        RuntimeError: backward() can run once per forward_train(): ...
        """
        if self._used:
            raise RuntimeError(
                "backward() can run once per forward_train(): it reuses the kept "
                "activations as scratch. Call forward_train() again.")
        config, inputs = self._config, self._inputs
        dtype = config.dtype
        grad_output = check_shape(
            "grad_output", as_real_array("grad_output", grad_output, dtype), self._output_shape)
        grad_h_n, grad_c_n = self._state_gradients(grad_state)
        self._used = True

        grad = grad_output[:, None, :] if inputs.unbatched else grad_output
        # aligned too: a C-order view one byte off its item size would reach the kernel as is
        grad = np.require(grad.transpose(1, 0, 2) if inputs.batch_first else grad,
                          requirements=("C", "A"))
        width, directions = config.output_size, config.num_directions
        if inputs.lengths is not None and config.padding == "carry":
            grad = _fold_carried_gradient(grad, inputs.lengths, width)

        grad_h0 = np.empty_like(inputs.h0)
        grad_c0 = np.empty_like(inputs.c0)
        grads = {}
        for layer in reversed(range(config.num_layers)):
            kept_layer = self._layers[layer]
            grad_input = np.zeros_like(kept_layer.input)
            for direction, kept in enumerate(kept_layer.directions):
                index = layer * directions + direction
                columns = slice(direction * width, (direction + 1) * width)
                layer_grads = _empty_gradients(kept)
                _lstm.backward_layer(
                    kept_layer.input, kept.w_ih, kept.w_hh, inputs.h0[index], inputs.c0[index],
                    kept_layer.output[:, :, columns], kept.act, kept.cells, grad[:, :, columns],
                    grad_h_n[index], grad_c_n[index], grad_input, grad_h0[index],
                    grad_c0[index], layer_grads["w_ih"], layer_grads["w_hh"],
                    layer_grads["bias"], w_hr=kept.w_hr, grad_w_hr=layer_grads["w_hr"],
                    lengths=inputs.lengths, reverse=_walk.runs_reversed(config, direction),
                    h_mask=kept.h_mask, grad_peephole=layer_grads["peephole"],
                    **_walk.cell_options(config, direction, kept.peephole))
                grads.update(_named(config, layer, direction, layer_grads))
            # the input of layer k > 0 was layer k - 1's output times its dropout mask
            grad = grad_input
            if layer and self._dropout_masks is not None:
                grad = grad_input * self._dropout_masks[layer - 1]
        if config.go_backwards:  # layer 0 read x with each row reversed
            grad = _walk.reversed_rows(grad, inputs.lengths)

        grad_x = grad.transpose(1, 0, 2) if inputs.batch_first else grad
        grads = {name: grads[name] for name in parameter_shapes(config)}
        if inputs.unbatched:
            return grad_x[:, 0], (grad_h0[:, 0], grad_c0[:, 0]), grads
        return np.ascontiguousarray(grad_x), (grad_h0, grad_c0), grads

    def _state_gradients(self, grad_state: StateLike) -> Sequence[NDArray[Any]]:
        """(dL/dh_n, dL/dc_n) as fresh (L*dirs, B, .) arrays; zeros if not given."""
        h0, c0 = self._inputs.h0, self._inputs.c0
        if grad_state is None:
            return np.zeros_like(h0), np.zeros_like(c0)
        if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
            raise TypeError(
                f"grad_state must be a tuple (grad_h_n, grad_c_n) or None, "
                f"got {type(grad_state).__name__}")
        result = []
        for position, (name, value, like) in enumerate(
                (("grad_h_n", grad_state[0], h0), ("grad_c_n", grad_state[1], c0))):
            shape = (like.shape[0], like.shape[2]) if self._inputs.unbatched else like.shape
            array = as_real_array(name, value, self._config.dtype)
            check_shape(f"grad_state[{position}] ({name})", array, shape)
            result.append(np.array(array.reshape(like.shape), order="C"))
        return result


def _fold_carried_gradient(grad_time_major, lengths, width):
    """With padding="carry" a padded output is a copy of the row's last valid one:
    its gradient belongs there. Only the forward direction's columns carry."""
    grad = np.array(grad_time_major)
    steps = grad.shape[0]
    for row, length in enumerate(lengths):
        if length < steps:
            grad[length - 1, row, :width] += grad[length:, row, :width].sum(axis=0)
            grad[length:, row, :width] = 0
    return grad


def _empty_gradients(kept):
    gradients = {
        "w_ih": np.empty_like(kept.w_ih),
        "w_hh": np.empty_like(kept.w_hh),
        "bias": np.empty(kept.w_ih.shape[0], kept.w_ih.dtype),
        "w_hr": None if kept.w_hr is None else np.empty_like(kept.w_hr),
        "peephole": None if kept.peephole is None else np.empty_like(kept.peephole),
    }
    return gradients


def _named(config, layer, direction, layer_grads):
    """The gradients of one (layer, direction) under the model's parameter names."""
    names = [name for name, _ in layer_layout(config, layer, direction)]
    values = [layer_grads["w_ih"], layer_grads["w_hh"]]
    if config.bias:
        values += [layer_grads["bias"], layer_grads["bias"].copy()]
    if config.proj_size:
        values.append(layer_grads["w_hr"])
    if config.peepholes:
        values.append(layer_grads["peephole"])
    return dict(zip(names, values))
