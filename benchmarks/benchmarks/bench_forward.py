"""cylstm's forward pass: the main configurations, a bidirectional stack, variable lengths."""

import numpy as np

import cylstm

from .common import CONFIGS, THREADS, Threads, inputs


class Forward(Threads):
    """One layer, one direction, float32: ``model(x)``."""

    params = [list(CONFIGS), THREADS]
    param_names = ["config", "threads"]

    def setup(self, config, threads):
        T, B, D, H = CONFIGS[config]
        self.x = inputs(T, B, D)
        self.model = cylstm.LSTM(D, H, seed=0)
        self.setup_threads(threads)
        self.model(self.x)  # warm: aligned weight copies, BLAS threads started

    def time_forward(self, config, threads):
        self.model(self.x)

    def peakmem_forward(self, config, threads):
        self.model(self.x)


class Bidirectional(Threads):
    """Two layers, both directions (config c's sizes)."""

    params = [THREADS]
    param_names = ["threads"]

    def setup(self, threads):
        T, B, D, H = CONFIGS["c"]
        self.x = inputs(T, B, D)
        self.model = cylstm.LSTM(D, H, num_layers=2, bidirectional=True, seed=0)
        self.setup_threads(threads)

    def time_forward(self, threads):
        self.model(self.x)


class Lengths(Threads):
    """One layer, T=200, lengths uniform in [T/4, T] (as the benchmark's varlen)."""

    params = [THREADS]
    param_names = ["threads"]

    def setup(self, threads):
        T, B, D, H = 200, 32, 128, 256
        rng = np.random.default_rng(0)
        self.x = inputs(T, B, D)
        self.lengths = rng.integers(T // 4, T + 1, size=B)
        self.model = cylstm.LSTM(D, H, seed=0)
        self.setup_threads(threads)

    def time_forward_lengths(self, threads):
        self.model(self.x, lengths=self.lengths)
