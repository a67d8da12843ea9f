"""Write tests/golden/onnx_lstm.npz: onnxruntime's LSTM operator on a few small fixed cases,
so test_onnx.py checks ONNX semantics on machines without onnx and onnxruntime.

Run from anywhere, with onnx and onnxruntime installed:  python tests/golden/make_onnx_golden.py
Each case <name> stores, in ONNX's own layouts (layout=0, gate order i, o, f, c):
<name>/W (dirs, 4H, D), <name>/R (dirs, 4H, H), <name>/B (dirs, 8H), <name>/X (T, B, D),
<name>/sequence_lens (B,) int32, <name>/initial_h and <name>/initial_c (dirs, B, H),
<name>/Y (T, dirs, B, H), <name>/Y_h and <name>/Y_c (dirs, B, H), and <name>/direction.
Plus "onnxruntime_version". float32 only: onnxruntime's CPU LSTM runs nothing else.
"""

import os

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

CASES = {
    # name: (direction, T, B, D, H)
    "forward": ("forward", 6, 3, 4, 5),
    "bidirectional": ("bidirectional", 5, 4, 3, 2),
}


def make_case(seed, direction, T, B, D, H):
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    f32 = lambda shape, scale=0.5: (scale * rng.standard_normal(shape)).astype(np.float32)  # noqa
    arrays = {"W": f32((dirs, 4 * H, D)), "R": f32((dirs, 4 * H, H)), "B": f32((dirs, 8 * H)),
              "X": f32((T, B, D), 1.0), "initial_h": f32((dirs, B, H)),
              "initial_c": f32((dirs, B, H))}
    # unequal lengths in no particular order, one full row and a length-1 row
    arrays["sequence_lens"] = np.array([T, 1, T - 2, 2][:B], np.int32)
    feeds = ["X", "sequence_lens", "initial_h", "initial_c"]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "sequence_lens", "initial_h",
                                     "initial_c"], ["Y", "Y_h", "Y_c"],
                            hidden_size=H, direction=direction)
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT32 if name == "sequence_lens"
                                            else TensorProto.FLOAT, arrays[name].shape)
              for name in feeds]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
               for name in ("Y", "Y_h", "Y_c")]
    weights = [numpy_helper.from_array(arrays[name], name) for name in ("W", "R", "B")]
    graph = helper.make_graph([node], "golden", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    Y, Y_h, Y_c = session.run(None, {name: arrays[name] for name in feeds})
    arrays.update(Y=Y, Y_h=Y_h, Y_c=Y_c, direction=np.array(direction))
    return arrays


def main():
    data = {"onnxruntime_version": np.array(onnxruntime.__version__)}
    for seed, (name, spec) in enumerate(CASES.items()):
        for key, value in make_case(seed, *spec).items():
            data[f"{name}/{key}"] = value
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_lstm.npz")
    np.savez_compressed(path, **data)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, onnx {onnx.__version__}, "
          f"onnxruntime {onnxruntime.__version__})")


if __name__ == "__main__":
    main()
