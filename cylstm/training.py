"""Training: a forward pass that keeps what backpropagation needs, and the backward pass.

    output, (h_n, c_n), backward = model.forward_train(x, hx, lengths)
    grad_x, (grad_h0, grad_c0), grads = backward(grad_output, (grad_h_n, grad_c_n))

Both time loops run in C (cylstm/_lstm.pyx: forward_layer with keep_act/keep_c,
backward_layer); this module walks layers and directions.

Memory kept per layer and direction: the gate activations (T x B x 4H) and the
cell states (T x B x H), about T x B x 5H values, plus each layer's output
(T x B x directions x H_out), which the next layer reads anyway, and copies of
the input, the initial state and the weights, so that changing them before
`backward` does not change the gradients.
"""
import numpy as np

from . import _lstm
from ._validation import as_real_array, check_shape
from .lstm import carry_last_valid, padded_steps


def forward_train(model, x, hx=None, lengths=None):
    """Run `model` on x like `model(x, hx, lengths)` and return a `Backward` too."""
    inputs = model._prepare(x, hx, lengths)
    # Own copies: the caller may overwrite x and hx before calling backward.
    inputs = inputs._replace(h0=np.array(inputs.h0), c0=np.array(inputs.c0))
    x_time_major = np.array(inputs.x_time_major, order="C")
    steps, batch = x_time_major.shape[:2]
    if inputs.lengths is not None:
        # The weight gradient is one product over all T x B rows: padded steps
        # must hold zeros there, whatever the user padded with (NaN is common).
        x_time_major[padded_steps(steps, inputs.lengths)] = 0
    width, directions = model.output_size, model.num_directions
    allocate = np.zeros if inputs.lengths is not None else np.empty  # zero past lengths
    dtype = model.dtype
    h_n, c_n = np.empty_like(inputs.h0), np.empty_like(inputs.c0)
    layers = []
    layer_input = x_time_major
    for layer in range(model.num_layers):
        output = allocate((steps, batch, directions * width), dtype)
        kept = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = [None if w is None else np.array(w)
                       for w in model._kernel_parameters(layer, direction)]
            w_ih, w_hh, bias, w_hr = weights
            act = allocate((steps, batch, 4 * model.hidden_size), dtype)
            cells = np.empty((steps, batch, model.hidden_size), dtype)
            h = np.array(inputs.h0[index], order="C")
            c = np.array(inputs.c0[index], order="C")
            _lstm.forward_layer(layer_input, w_ih, w_hh, bias, h, c,
                                output[:, :, direction * width:(direction + 1) * width],
                                w_hr=w_hr, lengths=inputs.lengths, reverse=direction == 1,
                                keep_act=act, keep_c=cells)
            h_n[index], c_n[index] = h, c
            kept.append(KeptDirection(w_ih, w_hh, w_hr, act, cells))
        layers.append(KeptLayer(layer_input, output, kept))
        layer_input = output

    result = np.array(layer_input)  # the user's copy; the kept one stays zero-padded
    if inputs.lengths is not None and model.padding == "carry":
        carry_last_valid(result[:, :, :width], inputs.lengths)
    if inputs.batch_first:
        result = np.ascontiguousarray(result.transpose(1, 0, 2))
    if inputs.unbatched:
        result = result[:, 0]
        return result, (h_n[:, 0], c_n[:, 0]), Backward(model, inputs, layers, result.shape)
    backward = Backward(model, inputs, layers, result.shape)
    return result, (h_n, c_n), backward


class KeptDirection:
    """What one direction of one layer keeps for backpropagation."""

    def __init__(self, w_ih, w_hh, w_hr, act, cells):
        self.w_ih, self.w_hh, self.w_hr = w_ih, w_hh, w_hr
        self.act = act  # (T, B, 4H) i, f, g, o; overwritten by the backward pass
        self.cells = cells  # (T, B, H)


class KeptLayer:
    def __init__(self, layer_input, output, directions):
        self.input = layer_input  # (T, B, D_k) time-major, contiguous
        self.output = output  # (T, B, dirs * H_out), zero past each row's length
        self.directions = directions


class Backward:
    """The backward pass of one `forward_train`; call it once.

    `backward(grad_output, grad_state=None)` takes dL/d(output) (the shape of
    output) and optionally (dL/dh_n, dL/dc_n), and returns `(grad_x, (grad_h0,
    grad_c0), grads)`: dL/dx in x's shape, dL/dh0 and dL/dc0 in h_n's and
    c_n's shapes, and {parameter name: dL/dparameter} in state_dict order.
    """

    def __init__(self, model, inputs, layers, output_shape):
        self._model = model
        self._inputs = inputs
        self._layers = layers
        self._output_shape = output_shape
        self._used = False

    def __call__(self, grad_output, grad_state=None):
        if self._used:
            raise RuntimeError(
                "backward() can run once per forward_train(): it reuses the kept "
                "activations as scratch. Call forward_train() again.")
        model, inputs = self._model, self._inputs
        dtype = model.dtype
        grad_output = check_shape(
            "grad_output", as_real_array("grad_output", grad_output, dtype), self._output_shape)
        grad_h_n, grad_c_n = self._state_gradients(grad_state)
        self._used = True

        grad = grad_output[:, None, :] if inputs.unbatched else grad_output
        # aligned too: a C-order view one byte off its item size would reach the kernel as is
        grad = np.require(grad.transpose(1, 0, 2) if inputs.batch_first else grad,
                          requirements="CA")
        width, directions = model.output_size, model.num_directions
        if inputs.lengths is not None and model.padding == "carry":
            grad = _fold_carried_gradient(grad, inputs.lengths, width)

        grad_h0 = np.empty_like(inputs.h0)
        grad_c0 = np.empty_like(inputs.c0)
        grads = {}
        for layer in reversed(range(model.num_layers)):
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
                    lengths=inputs.lengths, reverse=direction == 1)
                grads.update(_named(model, layer, direction, layer_grads))
            grad = grad_input

        grad_x = grad.transpose(1, 0, 2) if inputs.batch_first else grad
        grads = {name: grads[name] for name in model._parameter_shapes()}
        if inputs.unbatched:
            return grad_x[:, 0], (grad_h0[:, 0], grad_c0[:, 0]), grads
        return np.ascontiguousarray(grad_x), (grad_h0, grad_c0), grads

    def _state_gradients(self, grad_state):
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
            array = as_real_array(name, value, self._model.dtype)
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
    }
    return gradients


def _named(model, layer, direction, layer_grads):
    """The gradients of one (layer, direction) under the model's parameter names."""
    names = model._parameter_names(layer, direction)
    values = [layer_grads["w_ih"], layer_grads["w_hh"]]
    if model.bias:
        values += [layer_grads["bias"], layer_grads["bias"].copy()]
    if model.proj_size:
        values.append(layer_grads["w_hr"])
    return dict(zip(names, values))
