"""Streaming: feed a sequence in pieces and get the same outputs as in one call."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from . import _walk
from ._validation import as_real_array

if TYPE_CHECKING:
    from ._typing import FloatArray, State, StateLike


class LSTMStream:
    """A stateful runner over an LSTM: `stream(chunk)` consumes the next time steps.

    Made by `model.stream()`. Chunks are laid out as the model's input
    ((t, B, D), (B, t, D) with batch_first, or unbatched (t, D)) with any
    number of steps t; the batch size (and being unbatched) is fixed by the
    first chunk until `reset()`. The weights are read at each call, so changes
    to the model show up in the next chunk. A chunk runs as one time loop per
    layer whatever the model's num_threads (a stream's chunks are short).

    Per call it does only what a chunk needs: the state lives between chunks as
    one C-contiguous (h, c) pair per layer that the kernel updates in place, and
    the chunk is checked before the lock is taken (a one-step call is mostly
    this Python: about twice the kernel's own time, AMD EPYC).

    A stream may be shared between threads: calls, `reset()` and `state` take
    a lock, so each chunk runs whole against the state the previous one left
    (in whatever order the threads arrive).

    Parameters
    ----------
    model : cylstm.LSTM
        A model that is not bidirectional; it is read, never changed.

    Raises
    ------
    ValueError
        For a bidirectional model, whose backward direction needs the whole
        sequence.
    NotImplementedError
        For a variant the kernels do not compute yet (as a model call does).

    Examples
    --------
    >>> import numpy as np
    >>> import cylstm
    >>> model = cylstm.LSTM(3, 4, num_layers=2, seed=0, dtype=np.float64)
    >>> x = np.ones((6, 2, 3))
    >>> stream = model.stream()
    >>> first, rest = stream(x[:1]), stream(x[1:])
    >>> first.shape, rest.shape
    ((1, 2, 4), (5, 2, 4))
    >>> output, (h_n, c_n) = model(x)
    >>> np.allclose(rest, output[1:], rtol=0, atol=1e-12)
    True
    >>> h, c = stream.state
    >>> np.allclose(h, h_n, rtol=0, atol=1e-12), h.shape
    (True, (2, 2, 4))
    >>> stream(np.ones((1, 3, 3)))
    Traceback (most recent call last):
    ...
    ValueError: chunk must continue the stream's batch size 2, got batch size 3 ...
    """

    # model is a cylstm.LSTM; typed Any, as importing model.py here, even for the
    # type checker only, would close an import circle.
    _h: Any  # None until a chunk has run (see _clear)
    _c: Any

    def __init__(self, model: Any) -> None:
        if model.bidirectional:
            raise ValueError(
                "a bidirectional model cannot stream: its backward direction needs the "
                "whole sequence")
        if model.reverse or model.go_backwards:
            raise ValueError(
                f"a model with {'reverse' if model.reverse else 'go_backwards'}=True cannot "
                "stream: it reads each sequence from its end")
        self.model = model
        self._lock = threading.Lock()
        self._clear()

    def reset(self) -> None:
        """Start over from the zero state.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> stream = cylstm.LSTM(3, 4, seed=0).stream()
        >>> x = np.ones((2, 3), np.float32)            # unbatched (t, D)
        >>> first = stream(x)
        >>> stream.reset()
        >>> stream.state is None, np.array_equal(stream(x), first)
        (True, True)
        """
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._given = None      # a state set by the user, checked at the next chunk
        self._h = self._c = None  # per layer (B, H_out) and (B, H), once a chunk has run
        self._batch = self._unbatched = None

    def __call__(self, chunk: ArrayLike) -> FloatArray:
        """Run the next time steps; return their outputs.

        Parameters
        ----------
        chunk : array_like
            (t, B, D), (B, t, D) with batch_first, or unbatched (t, D).

        Returns
        -------
        ndarray
            The outputs of these t steps, laid out as the chunk.
        """
        config = self.model._config
        x_time_major, unbatched, batch_first = _walk.time_major(config, "chunk", chunk)
        batch = x_time_major.shape[1]
        with self._lock:
            if self._h is None:
                self._start(batch, unbatched)
            elif batch != self._batch or unbatched != self._unbatched:
                raise ValueError(
                    f"chunk must continue the stream's "
                    f"{self._describe(self._batch, self._unbatched)}, got "
                    f"{self._describe(batch, unbatched)} of shape {np.shape(chunk)}; "
                    "call reset() to start another")
            h, c = self._h, self._c
            flags = x_time_major.flags
            if (self.model._common_case and config.num_layers == 1 and config.bias
                    and flags.c_contiguous and flags.aligned):
                output = _walk.one_kernel_call(self.model, config, x_time_major, h[0], c[0])
            else:
                weights = _walk.kernel_weights(self.model, config)
                output, _, _ = _walk.walk(config, weights, x_time_major, h, c,
                                          batch_first=batch_first)
        return output[:, 0] if unbatched else output

    def _start(self, batch, unbatched):
        """The per-layer state for a stream of this batch, from the given state or zeros."""
        h0, c0 = _walk.initial_states(self.model._config, self._given, batch, unbatched,
                                      name="state")
        self._h = [np.array(h, order="C") for h in h0]  # the kernel updates them in place
        self._c = [np.array(c, order="C") for c in c0]
        self._batch, self._unbatched, self._given = batch, unbatched, None

    @staticmethod
    def _describe(batch, unbatched):
        return "unbatched input" if unbatched else f"batch size {batch}"

    @property
    def state(self) -> Optional[State]:
        """(h, c) after the last chunk, shaped as the model's (h_n, c_n); None before.

        A copy: later chunks do not change what was read. Setting it (checked
        as `hx` is) restarts the stream from that state; None from zeros.

        Examples
        --------
        >>> import numpy as np
        >>> import cylstm
        >>> model = cylstm.LSTM(3, 4, seed=0, dtype=np.float64)
        >>> x = np.ones((4, 1, 3))
        >>> stream = model.stream()
        >>> _ = stream(x[:2])
        >>> saved = stream.state
        >>> later = stream(x[2:])
        >>> stream.state = saved                      # go back two steps
        >>> np.array_equal(stream(x[2:]), later)
        True
        """
        with self._lock:
            if self._h is None:
                return self._given
            h, c = np.stack(self._h), np.stack(self._c)
            if self._unbatched:
                return h[:, 0], c[:, 0]
            return h, c

    @state.setter
    def state(self, value: StateLike) -> None:
        given = None if value is None else self._checked_state(value)
        with self._lock:
            self._clear()
            self._given = given

    def _checked_state(self, value):
        """Copies of (h, c), checked as hx: real, the model's dtype and shapes.

        The batch size is not known before the first chunk, so h and c must
        agree on it here and the chunk must match it.
        """
        model = self.model
        _walk.check_state_pair("state", value)
        layers = model.num_layers
        states = []
        for position, (part, features) in enumerate(
                (("h", model.output_size), ("c", model.hidden_size))):
            argument = f"state[{position}] ({part})"
            state = as_real_array(argument, value[position], model.dtype)
            if state.ndim not in (2, 3) or state.shape[0] != layers \
                    or state.shape[-1] != features:
                raise ValueError(
                    f"{argument} must have shape ({layers}, B, {features}), or ({layers}, "
                    f"{features}) for unbatched input, got {state.shape}")
            states.append(np.array(state))
        h, c = states
        if h.shape[:-1] != c.shape[:-1]:
            raise ValueError(
                f"state[0] (h) and state[1] (c) must agree on the batch, got shapes "
                f"{h.shape} and {c.shape}")
        return h, c
