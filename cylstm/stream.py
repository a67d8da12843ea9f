"""Streaming: feed a sequence in pieces and get the same outputs as in one call."""
import numpy as np

from . import _lstm
from .lstm import _kernel_input, _new_output


class LSTMStream:
    """A stateful runner over an LSTM: `stream(chunk)` consumes the next time steps.

    Made by `model.stream()`. Chunks are laid out as the model's input
    ((t, B, D), (B, t, D) with batch_first, or unbatched (t, D)) with any
    number of steps t; the batch size (and being unbatched) is fixed by the
    first chunk until `reset()`. The weights are read at each call, so changes
    to the model show up in the next chunk. A chunk runs as one time loop per
    layer whatever the model's num_threads (a stream's chunks are short).

    Per call it does only what a chunk needs: the state lives between chunks as
    one C-contiguous (h, c) pair per layer that the kernel updates in place, so
    a one-step call costs little more than the kernel (the model's general call
    path spends several times the kernel's time on a single step).
    """

    def __init__(self, model):
        if model.bidirectional:
            raise ValueError(
                "a bidirectional model cannot stream: its backward direction needs the "
                "whole sequence")
        self.model = model
        self.reset()

    def reset(self):
        """Start over from the zero state."""
        self._given = None      # a state set by the user, checked at the next chunk
        self._h = self._c = None  # per layer (B, H_out) and (B, H), once a chunk has run
        self._batch = self._unbatched = None

    def __call__(self, chunk):
        """Run the next time steps; return their outputs."""
        model = self.model
        x_time_major, unbatched, batch_first = model._time_major("chunk", chunk)
        steps, batch = x_time_major.shape[:2]
        if self._h is None:
            self._start(batch, unbatched)
        elif (batch, unbatched) != (self._batch, self._unbatched):
            raise ValueError(
                f"chunk must continue the stream's {self._describe(self._batch, self._unbatched)}"
                f", got {self._describe(batch, unbatched)} of shape {np.shape(chunk)}; "
                "call reset() to start another")

        # Every layer's weights are checked before the first one changes the state.
        weights = [model._kernel_parameters(layer, 0) for layer in range(model.num_layers)]
        layer_input = _kernel_input(x_time_major)
        for layer, (w_ih, w_hh, bias, w_hr) in enumerate(weights):
            last = layer == model.num_layers - 1
            output, output_time_major = _new_output(
                steps, batch, model.output_size, model.dtype, batch_first and last, False)
            _lstm.forward_layer(layer_input, w_ih, w_hh, bias, self._h[layer],
                                self._c[layer], output_time_major, w_hr=w_hr)
            layer_input = output_time_major
        return output[:, 0] if unbatched else output

    def _start(self, batch, unbatched):
        """The per-layer state for a stream of this batch, from the given state or zeros."""
        h0, c0 = self.model._initial_states(self._given, batch, unbatched)
        self._h = [np.array(h, order="C") for h in h0]  # the kernel updates them in place
        self._c = [np.array(c, order="C") for c in c0]
        self._batch, self._unbatched, self._given = batch, unbatched, None

    @staticmethod
    def _describe(batch, unbatched):
        return "unbatched input" if unbatched else f"batch size {batch}"

    @property
    def state(self):
        """(h, c) after the last chunk, shaped as the model's (h_n, c_n); None before.

        A copy: later chunks do not change what was read.
        """
        if self._h is None:
            return self._given
        h, c = np.stack(self._h), np.stack(self._c)
        if self._unbatched:
            return h[:, 0], c[:, 0]
        return h, c

    @state.setter
    def state(self, value):
        if value is not None:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(f"state must be a tuple (h, c) or None, got {type(value).__name__}")
            value = (np.array(value[0], dtype=self.model.dtype),
                     np.array(value[1], dtype=self.model.dtype))
        self.reset()
        self._given = value
