"""A one-layer LSTM forward pass in plain NumPy.

This is the NumPy baseline of ``cylstm.bench`` and the reference that ``python -m cylstm``
checks the compiled kernel against. It is written the way a careful NumPy user would write it,
so that the benchmark compares against a fair opponent rather than a straw man:

* one big matmul projects the inputs of all time steps at once: ``G = X @ W_ih.T + bias``;
* a Python loop over time does the recurrent product ``G[t] + h @ W_hh.T`` and the gate math
  with in-place ufuncs (``out=`` arguments, no temporaries in the loop);
* everything runs in the input's floating dtype (float32 stays float32).

Gate layout and semantics are PyTorch's (``torch.nn.LSTM``, one layer, one direction): rows of
``w_ih``/``w_hh``/``bias`` are the gates i, f, g, o, each ``hidden_size`` rows long, and

    i, f, o = sigmoid(.), g = tanh(.),  c = f * c + i * g,  h = o * tanh(c).

One trick keeps the loop short: ``sigmoid(z) = 0.5 * tanh(z / 2) + 0.5``. The rows of the i, f
and o gates in the weights and bias are halved once up front (exact in binary floating point), so
a single ``tanh`` over all 4H gate columns, then one multiply and one add by per-column constants,
gives all four activations. This needs no ``exp`` (so no overflow warnings for large inputs).

Only NumPy is imported.
"""

import numpy as np

__all__ = ["lstm_numpy"]


def lstm_numpy(x, w_ih, w_hh, bias, h0=None, c0=None):
    """Run one LSTM layer over a sequence with NumPy.

    Parameters
    ----------
    x : array_like, shape (T, B, D)
        Input sequence, time first (PyTorch's ``batch_first=False`` layout).
    w_ih : array_like, shape (4H, D)
        Input weights, gate order i, f, g, o (PyTorch's ``weight_ih_l0``).
    w_hh : array_like, shape (4H, H)
        Recurrent weights, gate order i, f, g, o (PyTorch's ``weight_hh_l0``).
    bias : array_like, shape (4H,)
        The summed bias ``b_ih + b_hh``.
    h0, c0 : array_like, shape (B, H), optional
        Initial hidden and cell state; zeros when omitted.

    Returns
    -------
    output : ndarray, shape (T, B, H)
        The hidden state at every step.
    h_n, c_n : ndarray, shape (B, H)
        The hidden and cell state after the last step.

    The computation runs in ``x``'s floating dtype (float32 stays float32, integers become
    float64); the weights and states are cast to it.
    """
    x = np.asarray(x)
    dtype = np.result_type(x.dtype, np.float32)
    if dtype.kind != "f":
        raise TypeError(f"x must be real-valued, got dtype {x.dtype}")
    x = x.astype(dtype, copy=False)
    w_ih = np.asarray(w_ih, dtype=dtype)
    w_hh = np.asarray(w_hh, dtype=dtype)
    bias = np.asarray(bias, dtype=dtype)

    if x.ndim != 3:
        raise ValueError(f"x must have shape (T, B, D), got shape {x.shape}")
    T, B, D = x.shape
    if w_hh.ndim != 2 or w_hh.shape[0] != 4 * w_hh.shape[1]:
        raise ValueError(f"w_hh must have shape (4H, H), got shape {w_hh.shape}")
    H = w_hh.shape[1]
    if w_ih.shape != (4 * H, D):
        raise ValueError(f"w_ih must have shape (4H, D) = {(4 * H, D)}, got shape {w_ih.shape}")
    if bias.shape != (4 * H,):
        raise ValueError(f"bias must have shape (4H,) = {(4 * H,)}, got shape {bias.shape}")

    def state(s, name):
        if s is None:
            return np.zeros((B, H), dtype=dtype)
        s = np.array(s, dtype=dtype, order="C", copy=True)
        if s.shape != (B, H):
            raise ValueError(f"{name} must have shape (B, H) = {(B, H)}, got shape {s.shape}")
        return s

    h = state(h0, "h0")
    c = state(c0, "c0")
    out = np.empty((T, B, H), dtype=dtype)
    if T == 0:
        return out, h, c

    # Per gate column: scale (applied to the pre-activation, folded into the weights) and the
    # affine map after tanh. i, f, o: sigmoid(z) = 0.5 * tanh(0.5 * z) + 0.5; g: tanh(z).
    scale = np.full(4 * H, 0.5, dtype=dtype)
    scale[2 * H:3 * H] = 1
    shift = np.full(4 * H, 0.5, dtype=dtype)
    shift[2 * H:3 * H] = 0
    w_ih_s = w_ih * scale[:, None]
    w_hh_t = (w_hh * scale[:, None]).T  # (H, 4H) view; matmul hands the transpose to BLAS

    # G = X @ W_ih.T + bias for all steps at once: (T*B, D) @ (D, 4H).
    gx = np.matmul(x.reshape(T * B, D), w_ih_s.T)
    gx += bias * scale
    gx = gx.reshape(T, B, 4 * H)

    g = np.empty((B, 4 * H), dtype=dtype)
    ig = np.empty((B, H), dtype=dtype)
    gate_i = g[:, 0:H]
    gate_f = g[:, H:2 * H]
    gate_g = g[:, 2 * H:3 * H]
    gate_o = g[:, 3 * H:4 * H]

    for t in range(T):
        np.matmul(h, w_hh_t, out=g)  # g = h @ W_hh.T   (pre-scaled)
        g += gx[t]                   # g += X[t] @ W_ih.T + bias
        np.tanh(g, out=g)
        g *= scale                   # i, f, o: 0.5 * tanh + 0.5 = sigmoid; g: tanh
        g += shift
        np.multiply(gate_i, gate_g, out=ig)
        c *= gate_f                  # c = f * c + i * g
        c += ig
        h = out[t]                   # h = o * tanh(c), written straight into the output
        np.tanh(c, out=h)
        h *= gate_o

    return out, out[-1].copy(), c
