"""Write tests/golden/keras_lstm.npz: what Keras LSTM and Bidirectional(LSTM) layers return for
a few small fixed cases, so test_keras.py checks cylstm.keras_io on machines without Keras.

Run from anywhere, with keras installed (any backend; KERAS_BACKEND defaults to torch here):
    python tests/golden/make_keras_golden.py

Each case <name> stores
  <name>/<half>/kernel, <name>/<half>/recurrent_kernel, <name>/<half>/bias (absent without
      bias): the weights as Keras stores them; <half> is "layer", or "forward_layer" and
      "backward_layer" for a Bidirectional;
  <name>/x (B, T, D); <name>/lengths (B,) when the case is masked (the Keras mask keeps each
      row's first lengths[b] steps; x holds random numbers at the masked steps too);
  <name>/initial_state (n, B, H) when the layer is called with one (Keras order: h, c, or
      h_fw, c_fw, h_bw, c_bw);
  <name>/output: the layer's output with return_sequences=True, return_state=True;
  <name>/states (n, B, H): its states, in the same Keras order;
  <name>/last_output: the output of the same weights with return_sequences=False;
  <name>/config: JSON with "bidirectional", "merge_mode" and, per half, the settings that
      cylstm.keras_io reads (units, use_bias, activation, recurrent_activation,
      go_backwards, zero_output_for_mask), as the Keras layer reported them.
Plus "keras_version" and "keras_backend". Weights and inputs come from NumPy's seeded
generator.
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

CASES = {
    # name: (bidirectional, use_bias, masked, initial_state, dtype, B, T, D, H)
    "plain": (False, True, False, False, "float32", 3, 6, 4, 5),
    "plain_nobias_initial_state": (False, False, False, True, "float32", 2, 5, 3, 4),
    "plain_masked": (False, True, True, False, "float32", 4, 7, 3, 5),
    # Unmasked: with a mask Keras runs the generic cell, whose matmuls Keras computes in
    # float32 on non-TensorFlow backends (its JAX-like dtype rules), so only float32-accurate.
    "plain_f64_initial_state": (False, True, False, True, "float64", 3, 5, 2, 3),
    "bidirectional_initial_state": (True, True, False, True, "float32", 3, 6, 4, 5),
    "bidirectional_nobias": (True, False, False, False, "float32", 2, 5, 3, 4),
    "bidirectional_masked": (True, True, True, False, "float32", 4, 7, 3, 5),
}
SETTINGS = ("units", "use_bias", "go_backwards", "zero_output_for_mask")
ACTIVATIONS = ("activation", "recurrent_activation")


def make_layer(bidirectional, use_bias, return_sequences, dtype, units, steps, features):
    lstm = keras.layers.LSTM(units, use_bias=use_bias, return_sequences=return_sequences,
                             return_state=True, dtype=dtype)
    layer = keras.layers.Bidirectional(lstm) if bidirectional else lstm
    layer.build((None, steps, features))
    return layer


def halves(layer):
    """{half name: keras LSTM layer}, named as in the golden file."""
    if hasattr(layer, "forward_layer"):
        return {"forward_layer": layer.forward_layer, "backward_layer": layer.backward_layer}
    return {"layer": layer}


def layer_config(layer, bidirectional):
    config = {"bidirectional": bidirectional,
              "merge_mode": layer.merge_mode if bidirectional else None}
    for name, half in halves(layer).items():
        config[name] = {key: getattr(half, key) for key in SETTINGS}
        config[name].update({key: getattr(half, key).__name__ for key in ACTIVATIONS})
    return config


def to_numpy(tensors):
    return [np.asarray(keras.ops.convert_to_numpy(t)) for t in tensors]


def make_case(seed, bidirectional, use_bias, masked, initial_state, dtype, B, T, D, H):
    rng = np.random.default_rng(seed)
    sequences = make_layer(bidirectional, use_bias, True, dtype, H, T, D)
    last = make_layer(bidirectional, use_bias, False, dtype, H, T, D)
    weights = [(0.5 * rng.standard_normal(w.shape)).astype(dtype)
               for w in sequences.get_weights()]
    sequences.set_weights(weights)
    last.set_weights(weights)

    arrays = {"x": rng.standard_normal((B, T, D)).astype(dtype)}
    call = {}
    if masked:
        # Unequal lengths, one full row; post-padded (cylstm's lengths express no other mask).
        arrays["lengths"] = np.concatenate([[T], rng.integers(1, T, B - 1)]).astype(np.int64)
        call["mask"] = np.arange(T)[None, :] < arrays["lengths"][:, None]
    if initial_state:
        states = 4 if bidirectional else 2
        arrays["initial_state"] = (0.5 * rng.standard_normal((states, B, H))).astype(dtype)
        call["initial_state"] = [keras.ops.convert_to_tensor(s)
                                 for s in arrays["initial_state"]]

    output, *states = to_numpy(sequences(arrays["x"], **call))
    last_output = to_numpy(last(arrays["x"], **call))[0]
    arrays.update(output=output, states=np.stack(states), last_output=last_output)
    for half_name, half in halves(sequences).items():
        for variable, value in zip(("kernel", "recurrent_kernel", "bias"), half.get_weights()):
            arrays[f"{half_name}/{variable}"] = value
    return arrays, layer_config(sequences, bidirectional)


def main():
    data = {"keras_version": np.array(keras.__version__),
            "keras_backend": np.array(keras.backend.backend())}
    for seed, (name, spec) in enumerate(CASES.items()):
        arrays, config = make_case(seed, *spec)
        for key, value in arrays.items():
            data[f"{name}/{key}"] = value
        data[f"{name}/config"] = np.array(json.dumps(config))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_lstm.npz")
    np.savez_compressed(path, **data)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(CASES)} cases)")


if __name__ == "__main__":
    main()
