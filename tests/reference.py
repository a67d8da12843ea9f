"""A plain float64 NumPy LSTM: the truth every kernel test compares against.

Deliberately naive (one Python iteration per time step, no tricks) so that it can be
checked by eye against the textbook equations, with PyTorch's layout and gate order:

    gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh      (4H,) split as i, f, g, o
    i, f, o = sigmoid(.)      g = tanh(.)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
"""

import numpy as np


def sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp is only ever taken of -|z| <= 0."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def lstm_reference(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None):
    """One LSTM layer, time-major, in float64.

    x (T, B, D); w_ih (4H, D); w_hh (4H, H); b_ih, b_hh (4H,) or None; h0, c0 (B, H) or None.
    Returns output (T, B, H), h_n (B, H), c_n (B, H), all float64.
    """
    x = np.asarray(x, dtype=np.float64)
    w_ih = np.asarray(w_ih, dtype=np.float64)
    w_hh = np.asarray(w_hh, dtype=np.float64)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    b_ih = np.zeros(4 * H) if b_ih is None else np.asarray(b_ih, dtype=np.float64)
    b_hh = np.zeros(4 * H) if b_hh is None else np.asarray(b_hh, dtype=np.float64)
    h = np.zeros((B, H)) if h0 is None else np.array(h0, dtype=np.float64)
    c = np.zeros((B, H)) if c0 is None else np.array(c0, dtype=np.float64)
    output = np.zeros((T, B, H))
    for t in range(T):
        gates = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh  # (B, 4H)
        i, f, g, o = np.split(gates, 4, axis=1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        output[t] = h
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
