"""Gradients to check `LSTM.forward_train` / `backward` against, computed without them:
central finite differences through the model's own forward pass, and torch autograd on a
torch.nn.LSTM holding the same weights. Importable because conftest.py puts this folder on
sys.path.

Everything is the gradient of one scalar, the pairing of the forward results with given
"upstream" gradients:

    L = sum(output * grad_output) + sum(h_n * grad_h_n) + sum(c_n * grad_c_n)

with respect to x, h0, c0 and every parameter. Gradients are returned as a dict with the keys
"x", "h0", "c0" and the state_dict names, in the shapes of those arrays (h0/c0: the shapes of
h_n/c_n, also when hx is None, which means zeros).
"""

import numpy as np


def pairing(output, h_n, c_n, grad_output, grad_state=None):
    """L for one forward result, in float64."""
    total = np.sum(np.asarray(output, np.float64) * grad_output)
    if grad_state is not None:
        total += np.sum(np.asarray(h_n, np.float64) * grad_state[0])
        total += np.sum(np.asarray(c_n, np.float64) * grad_state[1])
    return float(total)


def state_zeros(model, x):
    """(h0, c0) of zeros in the model's state shapes for input x (batched or not)."""
    layers = model.num_layers * (2 if model.bidirectional else 1)
    width = model.proj_size or model.hidden_size
    x = np.asarray(x)
    if x.ndim == 2:
        return np.zeros((layers, width)), np.zeros((layers, model.hidden_size))
    batch = x.shape[0] if model.batch_first else x.shape[1]
    return (np.zeros((layers, batch, width)), np.zeros((layers, batch, model.hidden_size)))


def numeric_gradients(model, x, hx=None, lengths=None, grad_output=None, grad_state=None,
                      eps=1e-6, max_entries=None, rng=None):
    """Central differences (L(v + eps) - L(v - eps)) / (2 eps) for every entry of x, h0, c0
    and every parameter, evaluating the model itself (use a float64 model).

    Parameters are perturbed in place (the model reads its parameter arrays at each call) and
    restored exactly. With max_entries, only that many random entries of each array (drawn
    with rng) are perturbed; the others are NaN in the result.

    To keep rounding out of the difference, L(+) - L(-) is formed as
    sum((output+ - output-) * grad_output) + ..., not as a difference of two large sums.
    """
    x = np.array(x, dtype=np.float64)
    h0, c0 = state_zeros(model, x) if hx is None else (np.array(a, dtype=np.float64)
                                                       for a in hx)
    grad_output = np.asarray(grad_output, np.float64)
    if grad_state is not None:
        grad_state = tuple(np.asarray(a, np.float64) for a in grad_state)

    def run():
        return model(x, (h0, c0), lengths)

    def difference(plus, minus):
        (o1, (h1, c1)), (o2, (h2, c2)) = plus, minus
        total = np.sum((np.asarray(o1, np.float64) - o2) * grad_output)
        if grad_state is not None:
            total += np.sum((np.asarray(h1, np.float64) - h2) * grad_state[0])
            total += np.sum((np.asarray(c1, np.float64) - c2) * grad_state[1])
        return total / (2 * eps)

    def entries(array):
        every = list(np.ndindex(array.shape))
        if max_entries is None or len(every) <= max_entries:
            return every
        chosen = rng.choice(len(every), size=max_entries, replace=False)
        return [every[i] for i in sorted(chosen)]

    def perturb(array):
        grad = np.full(array.shape, np.nan)
        for index in entries(array):
            old = array[index]
            array[index] = old + eps
            plus = run()
            array[index] = old - eps
            minus = run()
            array[index] = old
            grad[index] = difference(plus, minus)
        return grad

    grads = {"x": perturb(x), "h0": perturb(h0), "c0": perturb(c0)}
    for name in model.state_dict():
        grads[name] = perturb(getattr(model, name))
    return grads


def relative_error(analytic, numeric):
    """||analytic - numeric|| / (||analytic|| + ||numeric||) over the entries numeric has
    (not NaN); 0 for two all-zero arrays."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    known = ~np.isnan(numeric)
    a, n = analytic[known], numeric[known]
    scale = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(a - n) / scale) if scale > 0 else 0.0


def assert_gradients_close(analytic, numeric, rtol=1e-6, atol=1e-9, names=None):
    """For each key: same shape, norm-based relative error below rtol, and every entry within
    |a - n| <= rtol * (|a| + |n|) + atol * (1 + max|n|), which a wrong entry of the size
    of the gradient cannot pass. NaN entries of `numeric` (not perturbed) are skipped."""
    failures = []
    for name in names or numeric:
        a, n = np.asarray(analytic[name]), np.asarray(numeric[name], np.float64)
        assert a.shape == n.shape, (name, a.shape, n.shape)
        known = ~np.isnan(n)
        a64 = a.astype(np.float64)[known]
        n = n[known]
        err = relative_error(a64, n)
        bound = rtol * (np.abs(a64) + np.abs(n)) + atol * (1 + (np.abs(n).max() if n.size
                                                                 else 0))
        bad = np.abs(a64 - n) > bound
        if err > rtol or bad.any():
            worst = int(np.argmax(np.abs(a64 - n) - bound)) if n.size else 0
            failures.append(f"{name}: relative error {err:.3g}, {int(bad.sum())} bad entries "
                            f"(worst analytic {a64[worst]:.10g} vs numeric {n[worst]:.10g})")
    assert not failures, "gradients disagree:\n  " + "\n  ".join(failures)


def torch_gradients(model, x, hx=None, lengths=None, grad_output=None, grad_state=None):
    """The gradients of L through torch.nn.LSTM with `model`'s weights, configuration and
    dtype, by autograd. lengths go through pack_padded_sequence(enforce_sorted=False) and
    pad_packed_sequence; padding="carry" is built on torch's zero-padded output by repeating
    each row's last valid step in the forward half (as cylstm does). Also returns torch's
    forward results: (grads, (output, h_n, c_n)) as NumPy arrays.

    torch runs on one thread here (restored afterwards): on a busy 2-core machine its
    thread pool made these tiny problems 10-20x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _torch_gradients(torch, model, x, hx, lengths, grad_output, grad_state)
    finally:
        torch.set_num_threads(threads)


def _torch_gradients(torch, model, x, hx, lengths, grad_output, grad_state):
    dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[
        np.dtype(model.dtype)]
    tl = torch.nn.LSTM(model.input_size, model.hidden_size, model.num_layers,
                       bias=model.bias, batch_first=model.batch_first,
                       bidirectional=model.bidirectional, proj_size=model.proj_size,
                       dtype=dtype)
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    cast = model.dtype
    x_np = np.asarray(x).astype(cast)
    h0_np, c0_np = state_zeros(model, x_np) if hx is None else hx
    tx = torch.tensor(x_np, requires_grad=True)
    th0 = torch.tensor(np.asarray(h0_np).astype(cast), requires_grad=True)
    tc0 = torch.tensor(np.asarray(c0_np).astype(cast), requires_grad=True)
    if lengths is None:
        out, (h_n, c_n) = tl(tx, (th0, tc0))
    else:
        lengths = np.asarray(lengths)
        steps = x_np.shape[1] if model.batch_first else x_np.shape[0]
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            tx, torch.from_numpy(lengths.astype(np.int64)), batch_first=model.batch_first,
            enforce_sorted=False)
        out, (h_n, c_n) = tl(packed, (th0, tc0))
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=model.batch_first, total_length=steps)
        if model.padding == "carry":
            width = model.proj_size or model.hidden_size
            out_tm = out.transpose(0, 1) if model.batch_first else out
            t = torch.arange(steps)[:, None]
            source = torch.minimum(t, torch.from_numpy(lengths.astype(np.int64))[None] - 1)
            rows = torch.arange(len(lengths))[None, :].expand(steps, -1)
            forward = out_tm[source, rows, :width]
            out_tm = torch.cat([forward, out_tm[:, :, width:]], dim=2)
            out = out_tm.transpose(0, 1) if model.batch_first else out_tm
    loss = (out * torch.from_numpy(np.asarray(grad_output).astype(cast))).sum()
    if grad_state is not None:
        loss = loss + (h_n * torch.from_numpy(np.asarray(grad_state[0]).astype(cast))).sum()
        loss = loss + (c_n * torch.from_numpy(np.asarray(grad_state[1]).astype(cast))).sum()
    loss.backward()
    grads = {"x": tx.grad.numpy(), "h0": th0.grad.numpy(), "c0": tc0.grad.numpy()}
    for name, parameter in tl.named_parameters():
        grads[name] = parameter.grad.numpy()
    forward = (out.detach().numpy(), h_n.detach().numpy(), c_n.detach().numpy())
    return grads, forward
