"""cylstm's training step and streaming latency."""

import numpy as np

import cylstm

from .common import THREADS, Threads, inputs

#: name -> (T, B, D, H), as the benchmark's train-c and train-s.
TRAIN = {"train-c": (100, 32, 128, 256), "train-s": (50, 32, 64, 128)}


class Training(Threads):
    """``forward_train`` then ``backward``: dx and every weight gradient."""

    params = [list(TRAIN), THREADS]
    param_names = ["config", "threads"]

    def setup(self, config, threads):
        T, B, D, H = TRAIN[config]
        self.x = inputs(T, B, D)
        self.grad = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
        self.model = cylstm.LSTM(D, H, seed=0)
        self.setup_threads(threads)

    def _step(self):
        _, _, backward = self.model.forward_train(self.x)
        backward(self.grad)

    def time_step(self, config, threads):
        self._step()

    def peakmem_step(self, config, threads):
        self._step()


class Stream(Threads):
    """100 one-step calls, batch 1, D=32, H=64, the state carried (one thread)."""

    def setup(self):
        self.steps = list(inputs(100, 1, 32)[:, None])  # 100 arrays (1, 1, 32)
        self.model = cylstm.LSTM(32, 64, seed=0)
        self.setup_threads(1)

    def time_100_steps(self):
        stream = self.model.stream()
        for x_t in self.steps:
            stream(x_t)
