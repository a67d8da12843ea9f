"""Streaming: feed a sequence in pieces and get the same outputs as in one call."""
import numpy as np


class LSTMStream:
    """A stateful runner over an LSTM: `stream(chunk)` consumes the next time steps.

    Made by `model.stream()`. Chunks are laid out as the model's input
    ((t, B, D), (B, t, D) with batch_first, or unbatched (t, D)) with any
    number of steps t; the batch size is fixed by the first chunk until
    `reset()`. The weights are read at each call, so changes to the model
    show up in the next chunk.
    """

    def __init__(self, model):
        if model.bidirectional:
            raise ValueError(
                "a bidirectional model cannot stream: its backward direction needs the "
                "whole sequence")
        self.model = model
        self._state = None

    def __call__(self, chunk):
        """Run the next time steps; return their outputs."""
        output, self._state = self.model(chunk, self._state)
        return output

    @property
    def state(self):
        """(h, c) after the last chunk, shaped as the model's (h_n, c_n); None before."""
        return self._state

    @state.setter
    def state(self, value):
        if value is not None:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(f"state must be a tuple (h, c) or None, got {type(value).__name__}")
            value = (np.array(value[0], dtype=self.model.dtype),
                     np.array(value[1], dtype=self.model.dtype))
        self._state = value

    def reset(self):
        """Start over from the zero state."""
        self._state = None
