"""The cell's variants (issue 14) beside the plain cell: the plain cell keeps its fused SIMD
code, peepholes and clip run a second cell (cylstm/_cell_variants.h), other activations a
per-activation block path. Configs a (batch 1, small) and c (batch 32, BLAS-bound)."""

import cylstm

from .common import CONFIGS, Threads, inputs

VARIANTS = {
    "plain": {},
    "peepholes+clip": dict(peepholes=True, clip=3.0),
    "peepholes+clip+input_forget": dict(peepholes=True, clip=3.0, input_forget=True),
    "hard_sigmoid,tanh,softsign": dict(activations=[("hard_sigmoid",), ("tanh",),
                                                    ("softsign",)]),
}


class Variants(Threads):
    """One layer, float32, one BLAS thread: ``model(x)`` and a training step."""

    params = [["a", "c"], list(VARIANTS)]
    param_names = ["config", "variant"]

    def setup(self, config, variant):
        T, B, D, H = CONFIGS[config]
        self.x = inputs(T, B, D)
        # Commits before the variants refused them (TypeError before the options existed,
        # NotImplementedError at the call after): asv counts NotImplementedError as "not run".
        try:
            self.model = cylstm.LSTM(D, H, seed=0, **VARIANTS[variant])
        except TypeError:
            raise NotImplementedError(f"no {variant} cell in this cylstm") from None
        self.setup_threads(1)
        self.model(self.x)

    def time_forward(self, config, variant):
        self.model(self.x)

    def time_training_step(self, config, variant):
        output, _, backward = self.model.forward_train(self.x)
        backward(output)
