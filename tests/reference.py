"""A plain float64 NumPy LSTM: the truth every kernel test compares against.

Deliberately naive (one Python iteration per time step, no tricks) so that it can be
checked by eye against the textbook equations, with PyTorch's layout and gate order:

    gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh      (4H,) split as i, f, g, o
    i, f, o = sigmoid(.)      g = tanh(.)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                (with a projection, LSTMP: h_t = W_hr (o * tanh(c_t)))

The variants of the ONNX operator (and Keras) are options of `lstm_step`, written as the ONNX
LSTM's equations: peepholes p = (p_i, p_f, p_o) add p_i * c_{t-1} to i, p_f * c_{t-1} to f and
p_o * c_t to o before their activation; clip bounds every pre-activation (after the bias and the
peephole term) to [-clip, clip]; input_forget couples the gates, f = 1 - i; activations (f, g, h)
replace sigmoid (gates), tanh (candidate) and tanh (of c), each with its alpha and beta.

Variable lengths (PyTorch packed sequences, ONNX sequence_lens): each batch row is its own
sequence of lengths[b] steps; the reverse direction runs it backwards from its last valid
step. Past its length a row outputs zeros and its final state is the one after its last
valid step.
"""

import re

import numpy as np


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp is only ever taken of -|z| <= 0."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# The ONNX operator's activations as the ONNX operators of those names define them.
ACTIVATION_FUNCTIONS = {
    "sigmoid": lambda z, a, b: sigmoid(z),
    "tanh": lambda z, a, b: np.tanh(z),
    "relu": lambda z, a, b: np.maximum(z, 0.0),
    "affine": lambda z, a, b: a * z + b,
    "leaky_relu": lambda z, a, b: np.where(z >= 0, z, a * z),
    "thresholded_relu": lambda z, a, b: np.where(z > a, z, 0.0),
    "scaled_tanh": lambda z, a, b: a * np.tanh(b * z),
    "hard_sigmoid": lambda z, a, b: np.clip(a * z + b, 0.0, 1.0),
    "elu": lambda z, a, b: np.where(z >= 0, z, a * np.expm1(np.minimum(z, 0.0))),
    "softsign": lambda z, a, b: z / (1.0 + np.abs(z)),
    "softplus": lambda z, a, b: np.logaddexp(0.0, z),
}
PLAIN_ACTIVATIONS = (("sigmoid", 0.0, 0.0), ("tanh", 0.0, 0.0), ("tanh", 0.0, 0.0))


def activate(spec, z):
    """Apply one activation given as (name, alpha, beta)."""
    name, alpha, beta = spec
    return ACTIVATION_FUNCTIONS[name](np.asarray(z, dtype=np.float64), alpha, beta)


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None, *, peephole=None, clip=None,
              input_forget=False, activations=None):
    """One time step for one or more rows: x (..., D), h (..., P), c (..., H) -> (h, c).

    peephole (3H,) i, f, o or None; clip a positive float or None; input_forget: f = 1 - i;
    activations: (f, g, h), each (name, alpha, beta), or None for sigmoid, tanh, tanh.
    """
    act_f, act_g, act_h = activations or PLAIN_ACTIVATIONS
    bound = (lambda z: z) if clip is None else (lambda z: np.clip(z, -clip, clip))  # noqa: E731
    p_i, p_f, p_o = (0.0, 0.0, 0.0) if peephole is None else np.split(peephole, 3)
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (..., 4H)
    i, f, g, o = np.split(gates, 4, axis=-1)
    i = activate(act_f, bound(i + p_i * c))
    f = 1.0 - i if input_forget else activate(act_f, bound(f + p_f * c))
    g = activate(act_g, bound(g))
    c = f * c + i * g
    o = activate(act_f, bound(o + p_o * c))
    h = o * activate(act_h, c)
    if w_hr is not None:
        h = h @ w_hr.T  # (..., P)
    return h, c


def lstm_reference(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, w_hr=None,
                   lengths=None, reverse=False, **variants):
    """One LSTM layer, one direction, time-major, in float64.

    x (T, B, D); w_ih (4H, D); w_hh (4H, P); b_ih, b_hh (4H,) or None; h0 (B, P), c0 (B, H)
    or None; w_hr (P, H) or None (then P = H); lengths (B,) ints in [1, T] or None (all T);
    reverse: run each row backwards from its last valid step.
    variants: peephole, clip, input_forget, activations of `lstm_step`.
    Returns output (T, B, P) (zeros at padded steps), h_n (B, P), c_n (B, H), all float64.
    """
    x = np.asarray(x, dtype=np.float64)
    f64 = (lambda a: None if a is None else np.asarray(a, dtype=np.float64))  # noqa: E731
    w_ih, w_hh, w_hr = f64(w_ih), f64(w_hh), f64(w_hr)
    T, B, _ = x.shape
    H = w_ih.shape[0] // 4
    P = w_hh.shape[1]
    b_ih = np.zeros(4 * H) if b_ih is None else f64(b_ih)
    b_hh = np.zeros(4 * H) if b_hh is None else f64(b_hh)
    h = np.zeros((B, P)) if h0 is None else np.array(h0, dtype=np.float64)
    c = np.zeros((B, H)) if c0 is None else np.array(c0, dtype=np.float64)
    output = np.zeros((T, B, P))
    if lengths is None and not reverse:
        # All rows at once: the plain textbook loop.
        for t in range(T):
            h, c = lstm_step(x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr, **variants)
            output[t] = h
        return output, h, c
    # One row at a time, each over its own steps.
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    for b in range(B):
        steps = range(lengths[b])
        for t in (reversed(steps) if reverse else steps):
            h[b], c[b] = lstm_step(x[t, b], h[b], c[b], w_ih, w_hh, b_ih, b_hh, w_hr,
                                   **variants)
            output[t, b] = h[b]
    return output, h, c


def reference_module(params, x, hx=None, batch_first=False, dtype=None):
    """torch.nn.LSTM(num_layers=1) semantics on top of `lstm_reference`.

    params: mapping with weight_ih_l0, weight_hh_l0 and optionally bias_ih_l0, bias_hh_l0.
    x: (T, B, D), (B, T, D) if batch_first, or unbatched (T, D).
    hx: None or (h0, c0), each (1, B, H) ((1, H) unbatched).
    dtype: if given, x and hx are first rounded to it, as the model converts its inputs.
    Returns output, (h_n, c_n) in torch's shapes, float64.
    """
    def cast(a):
        a = np.asarray(a)
        return a.astype(dtype) if dtype is not None else a

    x = cast(x)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    h0 = c0 = None
    if hx is not None:
        h0, c0 = (cast(a).reshape(-1, cast(a).shape[-1]) for a in hx)  # (1,B,H)->(B,H)
    out, h_n, c_n = lstm_reference(
        x, params["weight_ih_l0"], params["weight_hh_l0"],
        params.get("bias_ih_l0"), params.get("bias_hh_l0"), h0, c0)
    if unbatched:
        return out[:, 0, :], (h_n, c_n)  # (T, H), (1, H)
    if batch_first:
        out = out.transpose(1, 0, 2)
    return out, (h_n[None], c_n[None])


def reference_model(params, x, hx=None, lengths=None, *, batch_first=False, padding="zeros",
                    dtype=None, reverse=False, go_backwards=False, clip=None,
                    input_forget=False, activations=None):
    """The whole cylstm.LSTM / torch.nn.LSTM: layers, directions, projection, lengths.

    params: torch's names (weight_ih_l{k}, ..., weight_hr_l{k}, suffix _reverse); the number
    of layers, the directions and the projection are read off the names.
    x: (T, B, D), (B, T, D) if batch_first, or unbatched (T, D).
    hx: None or (h0, c0): (layers * dirs, B, P) and (layers * dirs, B, H), no B unbatched.
    lengths: None or (B,) ints in [1, T].
    padding: "zeros", or "carry": the forward direction of the last layer repeats a row's
    last valid output at its padded steps (the reverse direction stays zero there).
    dtype: if given, x and hx are first rounded to it, as the model converts its inputs.
    reverse: the one direction runs each row backwards (ONNX direction="reverse").
    go_backwards: each row is reversed within its length first and the output stays in that
    order (Keras). clip, input_forget: as in `lstm_step`, for every layer and direction;
    activations: None, or one (f, g, h) triple of (name, alpha, beta) per direction. Peepholes
    are read off the names (weight_peephole_l{k}).
    Returns output (T, B, dirs * P) (laid out as x), (h_n, c_n), all float64.
    """
    def cast(a):
        a = np.asarray(a)
        return a.astype(dtype) if dtype is not None else a

    num_layers = len([k for k in params if re.fullmatch(r"weight_ih_l\d+", k)])
    dirs = 2 if "weight_ih_l0_reverse" in params else 1
    x = cast(x)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]
    elif batch_first:
        x = x.transpose(1, 0, 2)
    T, B, _ = x.shape
    if go_backwards:
        x = _reversed_rows(x, lengths)
    h0 = c0 = [None] * (num_layers * dirs)
    if hx is not None:
        h0, c0 = (cast(a).reshape(num_layers * dirs, B, -1) for a in hx)
    h_n, c_n = [], []
    layer_input = x
    for layer in range(num_layers):
        outputs = []
        for direction in range(dirs):
            suffix = f"l{layer}" + ("_reverse" if direction else "")
            index = layer * dirs + direction
            out, h, c = lstm_reference(
                layer_input, params[f"weight_ih_{suffix}"], params[f"weight_hh_{suffix}"],
                params.get(f"bias_ih_{suffix}"), params.get(f"bias_hh_{suffix}"),
                h0[index], c0[index], w_hr=params.get(f"weight_hr_{suffix}"),
                lengths=lengths, reverse=direction == 1 or reverse,
                peephole=params.get(f"weight_peephole_{suffix}"), clip=clip,
                input_forget=input_forget,
                activations=None if activations is None else activations[direction])
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = np.concatenate(outputs, axis=2)  # forward first
    output = layer_input
    if lengths is not None and padding == "carry":
        P = output.shape[2] // dirs
        for b, length in enumerate(lengths):
            output[length:, b, :P] = output[length - 1, b, :P]
    h_n, c_n = np.stack(h_n), np.stack(c_n)
    if unbatched:
        return output[:, 0], (h_n[:, 0], c_n[:, 0])
    if batch_first:
        output = output.transpose(1, 0, 2)
    return output, (h_n, c_n)


def _reversed_rows(x, lengths):
    """x (T, B, D) with each row's first lengths[b] steps in reverse order."""
    T, B, _ = x.shape
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    flipped = np.array(x, dtype=np.float64)
    for b, length in enumerate(lengths):
        flipped[:length, b] = x[:length, b][::-1]
    return flipped
