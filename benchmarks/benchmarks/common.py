"""What the suite's classes share: the shapes, random inputs, and BLAS threads limited in
setup() (threadpoolctl) and restored in teardown().

The shapes are those of ``python -m cylstm bench`` (cylstm/bench/configs.py), written out here
so that the suite also runs against commits from before that module existed.
"""

import numpy as np

#: name -> (T, B, D, H): sequence length, batch, input size, hidden size (float32).
CONFIGS = {
    "a": (1000, 1, 32, 64),   # a long stream through a small model
    "b": (500, 1, 128, 256),  # batch-1 inference of a medium model
    "c": (100, 32, 128, 256),  # a small batch
    "d": (100, 64, 512, 512),  # a large model: BLAS-bound
    "e": (50, 256, 256, 256),  # a large batch over a short sequence
}

THREADS = [1, 2]


def inputs(T, B, D, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, D)).astype(np.float32)


class Threads:
    """Mixin: setup_threads(n) limits every BLAS and OpenMP pool to n threads."""

    _limits = None

    def setup_threads(self, n):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise NotImplementedError("threadpoolctl is not installed") from None
        self._limits = threadpool_limits(limits=n)

    def teardown(self, *params):
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None
