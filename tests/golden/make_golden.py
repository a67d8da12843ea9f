"""Write tests/golden/torch_lstm.npz: torch.nn.LSTM outputs for a few small fixed cases, so
test_golden.py checks torch equivalence on machines without torch.

Run from anywhere, with torch installed:  python tests/golden/make_golden.py
Each case <name> stores <name>/weight_ih_l0 ... (torch's state dict as NumPy), <name>/x,
<name>/h0, <name>/c0 (absent when the case runs without hx), <name>/output, <name>/h_n,
<name>/c_n, and <name>/config: a JSON string with dtype, bias, batch_first, unbatched,
input_size, hidden_size. Plus "torch_version". Inputs come from NumPy's seeded generator,
weights from torch's seeded default init.

STACKED_CASES add num_layers, bidirectional and proj_size to the config, and some store
<name>/lengths (B,): those ran through torch's packed sequences (pack_padded_sequence with
enforce_sorted=False, pad_packed_sequence with total_length=T), so output is zero past each
row's length and h_n, c_n are the states at each row's last valid step.
"""

import json
import os

import numpy as np
import torch

CASES = {
    # name: (dtype, bias, batch_first, unbatched, with_hx, T, B, D, H)
    "f32_bias": ("float32", True, False, False, True, 7, 3, 3, 5),
    "f32_nobias_bf": ("float32", False, True, False, True, 6, 4, 2, 4),
    "f32_bias_nohx": ("float32", True, False, False, False, 9, 2, 5, 3),
    "f64_bias_bf": ("float64", True, True, False, True, 8, 3, 4, 6),
    "f64_nobias": ("float64", False, False, False, True, 5, 2, 3, 5),
    "f64_unbatched": ("float64", True, False, True, True, 10, 1, 4, 3),
    "f32_unbatched_bf": ("float32", True, True, True, False, 5, 1, 2, 7),
}

STACKED_CASES = {
    # name: (dtype, bias, batch_first, unbatched, with_hx, T, B, D, H,
    #        num_layers, bidirectional, proj_size, lengths or None)
    "f32_l2_bidir": ("float32", True, False, False, True, 6, 3, 3, 4, 2, True, 0, None),
    "f64_l3_proj_bf": ("float64", True, True, False, True, 5, 2, 3, 5, 3, False, 2, None),
    "f32_l2_bidir_proj_lengths": ("float32", True, False, False, True, 7, 4, 3, 5, 2, True, 3,
                                  [4, 7, 1, 5]),
    "f64_bidir_nobias_bf_lengths": ("float64", False, True, False, False, 6, 3, 2, 4, 1, True,
                                    0, [2, 6, 5]),
    "f64_l2_proj_lengths_nohx": ("float64", True, False, False, False, 5, 3, 4, 6, 2, False,
                                 4, [5, 1, 3]),
    "f32_l2_bidir_proj_unbatched": ("float32", True, False, True, True, 6, 1, 3, 5, 2, True, 2,
                                    None),
}


def make_case(seed, dtype, bias, batch_first, unbatched, with_hx, T, B, D, H):
    tdtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(D, H, bias=bias, batch_first=batch_first, dtype=tdtype)
    rng = np.random.default_rng(seed)
    if unbatched:
        x_shape, s_shape = (T, D), (1, H)
    else:
        x_shape, s_shape = ((B, T, D) if batch_first else (T, B, D)), (1, B, H)
    arrays = {"x": rng.standard_normal(x_shape).astype(dtype)}
    if with_hx:
        arrays["h0"] = (0.5 * rng.standard_normal(s_shape)).astype(dtype)
        arrays["c0"] = (0.5 * rng.standard_normal(s_shape)).astype(dtype)
    with torch.no_grad():
        args = [torch.from_numpy(arrays["x"])]
        if with_hx:
            args.append((torch.from_numpy(arrays["h0"]), torch.from_numpy(arrays["c0"])))
        out, (h_n, c_n) = lstm(*args)
    arrays.update({k: v.detach().numpy().copy() for k, v in lstm.state_dict().items()})
    arrays.update(output=out.numpy(), h_n=h_n.numpy(), c_n=c_n.numpy())
    config = dict(dtype=dtype, bias=bias, batch_first=batch_first, unbatched=unbatched,
                  input_size=D, hidden_size=H)
    return arrays, config


def make_stacked_case(seed, dtype, bias, batch_first, unbatched, with_hx, T, B, D, H,
                      num_layers, bidirectional, proj_size, lengths):
    tdtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(D, H, num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, proj_size=proj_size, dtype=tdtype)
    rng = np.random.default_rng(seed)
    states = num_layers * (2 if bidirectional else 1)
    out_size = proj_size or H
    if unbatched:
        x_shape, h_shape, c_shape = (T, D), (states, out_size), (states, H)
    else:
        x_shape = (B, T, D) if batch_first else (T, B, D)
        h_shape, c_shape = (states, B, out_size), (states, B, H)
    arrays = {"x": rng.standard_normal(x_shape).astype(dtype)}
    if with_hx:
        arrays["h0"] = (0.5 * rng.standard_normal(h_shape)).astype(dtype)
        arrays["c0"] = (0.5 * rng.standard_normal(c_shape)).astype(dtype)
    x = torch.from_numpy(arrays["x"])
    if lengths is not None:
        arrays["lengths"] = np.array(lengths, dtype=np.int64)
        x = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.from_numpy(arrays["lengths"]), batch_first=batch_first,
            enforce_sorted=False)
    with torch.no_grad():
        args = [x]
        if with_hx:
            args.append((torch.from_numpy(arrays["h0"]), torch.from_numpy(arrays["c0"])))
        out, (h_n, c_n) = lstm(*args)
    if lengths is not None:
        out = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=batch_first, total_length=T)[0]
    arrays.update({k: v.detach().numpy().copy() for k, v in lstm.state_dict().items()})
    arrays.update(output=out.numpy(), h_n=h_n.numpy(), c_n=c_n.numpy())
    config = dict(dtype=dtype, bias=bias, batch_first=batch_first, unbatched=unbatched,
                  input_size=D, hidden_size=H, num_layers=num_layers,
                  bidirectional=bidirectional, proj_size=proj_size)
    return arrays, config


def main():
    data = {"torch_version": np.array(torch.__version__)}
    made = [(name, make_case(seed, *spec)) for seed, (name, spec) in enumerate(CASES.items())]
    made += [(name, make_stacked_case(100 + seed, *spec))
             for seed, (name, spec) in enumerate(STACKED_CASES.items())]
    for name, (arrays, config) in made:
        for key, value in arrays.items():
            data[f"{name}/{key}"] = value
        data[f"{name}/config"] = np.array(json.dumps(config))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_lstm.npz")
    np.savez_compressed(path, **data)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(made)} cases)")


if __name__ == "__main__":
    main()
