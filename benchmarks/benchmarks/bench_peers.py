"""The same forward pass in PyTorch and ONNX Runtime, on the model's own exports
(``model.to_torch()``, ``model.to_onnx()``); each class skips when its framework is absent."""

import cylstm

from .common import CONFIGS, THREADS, Threads, inputs


class TorchForward(Threads):
    params = [list(CONFIGS), THREADS]
    param_names = ["config", "threads"]

    def setup(self, config, threads):
        try:
            import torch
        except ImportError:
            raise NotImplementedError("torch is not installed") from None
        T, B, D, H = CONFIGS[config]
        self.torch = torch
        self.x = torch.from_numpy(inputs(T, B, D))
        self.setup_threads(threads)
        torch.set_num_threads(threads)
        self.lstm = cylstm.LSTM(D, H, seed=0).to_torch().eval()

    def time_forward(self, config, threads):
        with self.torch.inference_mode():
            self.lstm(self.x)


class OnnxRuntimeForward(Threads):
    params = [list(CONFIGS), THREADS]
    param_names = ["config", "threads"]

    def setup(self, config, threads):
        try:
            import onnx  # noqa: F401  (to_onnx needs it)
            import onnxruntime
        except ImportError:
            raise NotImplementedError("onnx or onnxruntime is not installed") from None
        T, B, D, H = CONFIGS[config]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        proto = cylstm.LSTM(D, H, seed=0).to_onnx(sequence_lens=False)
        self.session = onnxruntime.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.feed = {"X": inputs(T, B, D)}
        self.setup_threads(threads)

    def time_forward(self, config, threads):
        self.session.run(["Y"], self.feed)
