"""Optimisers for training on NumPy arrays: SGD, Adam and gradient clipping.

NumPy only. An optimiser holds a set of named parameters (ndarrays) and, on
``step(grads)``, updates them IN PLACE from a dict of gradients with the same
names, with the semantics of ``torch.optim`` (same update rules, same order
of operations, state kept in the parameter's dtype)::

    import cylstm
    from cylstm.optim import Adam, clip_grad_norm

    model = cylstm.LSTM(1, 32, seed=0)
    opt = Adam(model, lr=1e-3)                # or Adam(parameters(model), ...)
    output, (h_n, c_n), backward = model.forward_train(x)
    grad_x, grad_state, grads = backward(grad_output)
    clip_grad_norm(grads, max_norm=1.0)       # optional, scales grads in place
    opt.step(grads)                           # model.weight_ih_l0 etc. change in place

``params`` is a mapping ``{name: ndarray}`` (any float arrays: an LSTM's
and, say, a read-out layer's together), or a model: anything with a
``state_dict()`` whose names are attributes holding the arrays, such as
:class:`cylstm.LSTM`. A model's arrays are looked up again at every step, so
``model.load_state_dict(...)`` after building the optimiser is safe (it
replaces the arrays; the optimiser follows).

Gradients must be given for every parameter (a missing name raises
KeyError); names the optimiser does not hold are ignored, so an optimiser over
part of a model (the rest frozen) takes the model's full gradient dict. Every
gradient is checked before anything is updated, so a failing step changes
nothing: new values are computed for every parameter before any is written.
Hyperparameters are plain attributes (``opt.lr = 1e-4`` for a
schedule).

Examples
--------
Teach a one-layer LSTM to output half of its constant input at the last step:

>>> import numpy as np
>>> import cylstm
>>> from cylstm.optim import Adam, clip_grad_norm
>>> model = cylstm.LSTM(1, 8, seed=0, dtype=np.float64)
>>> values = np.array([-1.0, -0.3, 0.3, 1.0])
>>> x = np.ones((10, 4, 1)) * values[:, None]       # T=10, B=4
>>> target = 0.5 * values
>>> opt = Adam(model, lr=0.02)
>>> losses = []
>>> for _ in range(40):
...     output, _, backward = model.forward_train(x)
...     error = output[-1, :, 0] - target
...     losses.append(float((error ** 2).mean()))
...     grad_output = np.zeros_like(output)
...     grad_output[-1, :, 0] = 2 * error / error.size
...     _, _, grads = backward(grad_output)
...     _ = clip_grad_norm(grads, max_norm=1.0)
...     opt.step(grads)
>>> bool(losses[-1] < losses[0] / 20)
True
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SGD", "Adam", "Optimizer", "clip_grad_norm", "parameters"]


def parameters(model: Any) -> dict[str, NDArray[Any]]:
    """The model's own parameter arrays, ``{name: getattr(model, name)}``.

    The names are those of ``model.state_dict()``; the values are the arrays
    the model computes with (not copies), so updating them in place trains
    the model.

    Raises
    ------
    TypeError
        If `model` has no ``state_dict()`` or lacks an attribute it names.

    Examples
    --------
    >>> import cylstm
    >>> from cylstm.optim import parameters
    >>> model = cylstm.LSTM(3, 4, seed=0)
    >>> params = parameters(model)
    >>> list(params)
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
    >>> params["weight_hh_l0"] is model.weight_hh_l0
    True
    """
    if not callable(getattr(model, "state_dict", None)):
        raise TypeError(
            f"expected a model with a state_dict() method, got {type(model).__name__}")
    params = {}
    for name in model.state_dict():
        if not hasattr(model, name):
            raise TypeError(
                f"{type(model).__name__}.state_dict() has {name!r}, but the model has no "
                f"attribute of that name holding the array")
        params[name] = getattr(model, name)
    return params


def clip_grad_norm(grads: Union[Mapping[Any, NDArray[Any]], Iterable[NDArray[Any]]],
                   max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so that their global L2 norm is at most max_norm.

    Like ``torch.nn.utils.clip_grad_norm_`` with ``norm_type=2``::

        total_norm = sqrt(sum over arrays g of sum(g ** 2))
        coef       = max_norm / (total_norm + 1e-6)
        g         *= coef        for every g, only when coef < 1

    Parameters
    ----------
    grads : mapping of name -> ndarray (or an iterable of ndarrays)
        Writable floating-point arrays; modified in place.
    max_norm : float
        The largest allowed global norm, > 0.
    error_if_nonfinite : bool
        Raise ValueError if the total norm is NaN or infinite. Otherwise such
        gradients are left as they are (torch would multiply by NaN).

    Returns
    -------
    float
        The total norm before clipping (accumulated in float64).

    Raises
    ------
    TypeError, ValueError
        For a gradient that is not a writable floating-point ndarray, a
        max_norm that is not > 0, or (with error_if_nonfinite) a NaN or
        infinite norm.

    Examples
    --------
    >>> import numpy as np
    >>> from cylstm.optim import clip_grad_norm
    >>> grads = {"a": np.array([3.0, 0.0]), "b": np.array([4.0])}
    >>> clip_grad_norm(grads, max_norm=1.0)
    5.0
    >>> np.round(grads["a"], 6), np.round(grads["b"], 6)
    (array([0.6, 0. ]), array([0.8]))
    """
    max_norm = _check_number("max_norm", max_norm, positive=True)
    arrays = list(grads.items()) if isinstance(grads, Mapping) else list(enumerate(grads))
    for name, grad in arrays:
        if not isinstance(grad, np.ndarray) or not np.issubdtype(grad.dtype, np.floating):
            raise TypeError(f"gradient {name!r} must be a floating-point ndarray (scaled in "
                            f"place), got {type(grad).__name__}"
                            + (f" of {grad.dtype}" if isinstance(grad, np.ndarray) else ""))
        if not grad.flags.writeable:
            raise ValueError(f"gradient {name!r} is read-only; clip_grad_norm scales in place")
    # One norm per array in float64, then the norm of the norms (math.hypot
    # avoids overflow and keeps full precision).
    norms = [float(np.linalg.norm(grad.ravel().astype(np.float64, copy=False)))
             for _, grad in arrays]
    total_norm = math.hypot(*norms) if norms else 0.0
    if not math.isfinite(total_norm):
        if error_if_nonfinite:
            raise ValueError(f"the total norm of the gradients is {total_norm}; "
                             f"set error_if_nonfinite=False to leave them unscaled")
        return total_norm
    coef = max_norm / (total_norm + 1e-6)
    if coef < 1.0:
        for _, grad in arrays:
            grad *= grad.dtype.type(coef)
    return total_norm


class Optimizer:
    """The shared part of the optimisers: the parameters, gradient checks, state.

    Subclasses set ``_hyperparameter_names`` and ``_state_names`` and write
    ``_update(param, grad, state)``, which returns the new values.

    Parameters
    ----------
    params : mapping of str to ndarray, or a model
        The arrays to update in place (see the module docstring).

    Raises
    ------
    TypeError, ValueError
        For no parameters, names that are not strings, or arrays that are
        not writable floating-point ndarrays (or the same array twice).

    Examples
    --------
    An optimiser's state goes into another one made for the same parameters:

    >>> import numpy as np
    >>> from cylstm.optim import SGD
    >>> params = {"w": np.zeros(2)}
    >>> opt = SGD(params, lr=0.1, momentum=0.9)
    >>> opt.step({"w": np.ones(2)})
    >>> saved = opt.state_dict()
    >>> saved["hyperparameters"]["momentum"], saved["state"]["w"]["step"]
    (0.9, 1)
    >>> again = SGD(params, lr=0.1, momentum=0.9)
    >>> again.load_state_dict(saved)
    >>> again.step({"w": np.ones(2)})
    >>> np.round(params["w"], 6)                       # -0.1, then -0.1 - 0.1 * 1.9
    array([-0.29, -0.29])
    """

    _hyperparameter_names: tuple[str, ...] = ()
    _state_names: tuple[str, ...] = ()
    _model: Any  # a model whose arrays are looked up at each step, or None
    _params: Optional[dict[str, NDArray[Any]]]  # the arrays themselves, or None
    state: dict[str, dict[str, Any]]

    def __init__(self, params: Union[Mapping[str, NDArray[Any]], Any]) -> None:
        if isinstance(params, Mapping):
            self._model = None
            self._params = dict(params)
            names = list(self._params)
        else:
            self._model = params
            self._params = None
            names = list(parameters(params))
        if not names:
            raise ValueError("the optimiser got no parameters")
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"parameter names must be strings, got {name!r}")
        self._names = names
        self._resolve()  # check the arrays now rather than at the first step
        self.state = {name: {} for name in names}

    @property
    def params(self) -> dict[str, NDArray[Any]]:
        """{name: ndarray} that the next step will update (a model's current arrays)."""
        return self._resolve()

    def _resolve(self):
        """The parameter arrays (looked up on the model, if any), checked."""
        if self._model is None:
            params = self._params
        else:
            params = {}
            for name in self._names:
                if not hasattr(self._model, name):
                    raise AttributeError(f"the model no longer has parameter {name!r}")
                params[name] = getattr(self._model, name)
        seen = {}
        for name, value in params.items():
            if not isinstance(value, np.ndarray):
                raise TypeError(f"parameter {name!r} must be an ndarray (updated in place), "
                                f"got {type(value).__name__}")
            if not np.issubdtype(value.dtype, np.floating):
                raise TypeError(f"parameter {name!r} must have a floating-point dtype, "
                                f"got {value.dtype}")
            if not value.flags.writeable:
                raise ValueError(f"parameter {name!r} is read-only")
            if id(value) in seen:
                raise ValueError(f"parameters {seen[id(value)]!r} and {name!r} are the same "
                                 f"array; it would be updated twice per step")
            seen[id(value)] = name
        return params

    def step(self, grads: Mapping[str, ArrayLike]) -> None:
        """Update every parameter in place from ``grads`` ({name: array_like}).

        Gradients are converted to their parameter's dtype and must have its
        shape. All are checked before any parameter changes.

        Raises
        ------
        KeyError
            For a parameter without a gradient.
        TypeError, ValueError
            For a gradient of the wrong type or shape, naming it.
        """
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads must be a mapping of parameter names to arrays, "
                            f"got {type(grads).__name__}")
        params = self._resolve()
        checked = []
        for name, param in params.items():
            if name not in grads:
                raise KeyError(f"no gradient for parameter {name!r} (grads has "
                               f"{sorted(map(str, grads))})")
            grad = np.asarray(grads[name])
            if grad.shape != param.shape:
                raise ValueError(f"gradient {name!r} has shape {grad.shape}, its parameter "
                                 f"has shape {param.shape}")
            if not (np.issubdtype(grad.dtype, np.floating)
                    or np.issubdtype(grad.dtype, np.integer)):
                raise TypeError(f"gradient {name!r} must be real numbers, got {grad.dtype}")
            checked.append((name, param, grad.astype(param.dtype, copy=False)))
        # Compute every new value first and only then write them: an error in
        # any update (a state buffer that no longer fits its parameter, memory)
        # leaves every parameter and every buffer as it was.
        updates = []
        for name, param, grad in checked:
            try:
                updates.append((param, self._update(param, grad, self.state[name]), name))
            except ValueError as exc:
                raise ValueError(f"parameter {name!r}: {exc}") from exc
        for param, (new_param, new_state), name in updates:
            param[...] = new_param
            self.state[name] = new_state

    def _update(self, param, grad, state):  # pragma: no cover - abstract
        """(new parameter values, new state dict), leaving param and state unchanged."""
        raise NotImplementedError

    def _buffer(self, state, key, param):
        """state[key], checked against the parameter it belongs to."""
        buffer = state[key]
        if buffer.shape != param.shape:
            raise ValueError(
                f"the optimiser's {key!r} has shape {buffer.shape}, but its parameter now has "
                f"shape {param.shape} (was the parameter replaced? build a new optimiser)")
        return buffer

    # -- saving and restoring ----------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """{"hyperparameters": {...}, "state": {name: {"step": int, buffers...}}}, copies."""
        return {
            "hyperparameters": {key: getattr(self, key) for key in self._hyperparameter_names},
            "state": {name: {key: (np.array(value) if isinstance(value, np.ndarray) else value)
                             for key, value in state.items()}
                      for name, state in self.state.items()},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what state_dict() returned (names and shapes must match; buffers copied)."""
        hyper = dict(state_dict["hyperparameters"])
        unknown = set(hyper) - set(self._hyperparameter_names)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)} for "
                             f"{type(self).__name__}")
        states = state_dict["state"]
        if set(states) != set(self._names):
            raise ValueError(f"optimiser state is for parameters {sorted(states)}, this "
                             f"optimiser has {sorted(self._names)}")
        params = self._resolve()
        loaded: dict[str, dict[str, Any]] = {}
        for name, state in states.items():
            loaded[name] = {}
            for key, value in state.items():
                if key == "step":
                    if isinstance(value, (bool, np.bool_)) or not isinstance(
                            value, (int, np.integer)) or value < 1:
                        raise ValueError(f"state 'step' of {name!r} must be an int >= 1, "
                                         f"got {value!r}")
                    loaded[name][key] = int(value)
                elif key in self._state_names:
                    value = np.array(value, dtype=params[name].dtype)
                    if value.shape != params[name].shape:
                        raise ValueError(f"state {key!r} of {name!r} has shape {value.shape}, "
                                         f"the parameter has {params[name].shape}")
                    loaded[name][key] = value
                else:
                    raise ValueError(f"unknown state {key!r} for parameter {name!r}")
        # Validate the hyperparameters through the constructor's checks.
        current = {key: getattr(self, key) for key in self._hyperparameter_names}
        current.update(hyper)
        type(self)(params, **current)
        for key, value in hyper.items():
            setattr(self, key, value)
        self.state = loaded

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={getattr(self, key)!r}"
                             for key in self._hyperparameter_names)
        return f"{type(self).__name__}({len(self._names)} parameters, {settings})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as torch.optim.SGD.

    For each parameter p with gradient g, at step t = 1, 2, ...::

        g = g + weight_decay * p                        (L2 penalty, if weight_decay)
        b = g                          at t = 1         (momentum buffer, if momentum)
        b = momentum * b + (1 - dampening) * g          at t > 1
        g = g + momentum * b           if nesterov, else  g = b
        p = p - lr * g

    Parameters
    ----------
    params : mapping name -> ndarray, or a model (see the module docstring)
    lr : float, >= 0
    momentum : float, >= 0
    weight_decay : float, >= 0
    nesterov : bool
        Nesterov momentum; needs momentum > 0 and dampening == 0.
    dampening : float, >= 0

    Examples
    --------
    >>> import numpy as np
    >>> from cylstm.optim import SGD
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> opt = SGD(params, lr=0.1)
    >>> opt.step({"w": np.array([1.0, -1.0])})
    >>> params["w"]
    array([0.9, 2.1])
    >>> opt
    SGD(1 parameters, lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
    """

    _hyperparameter_names = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    _state_names = ("momentum_buffer",)

    def __init__(self, params: Union[Mapping[str, NDArray[Any]], Any], lr: float,
                 momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 dampening: float = 0.0) -> None:
        self.lr = _check_number("lr", lr)
        self.momentum = _check_number("momentum", momentum)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        self.dampening = _check_number("dampening", dampening)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening == 0")
        super().__init__(params)

    def _update(self, param, grad, state):
        state = dict(state)
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if self.momentum:
            if "momentum_buffer" not in state:
                buf = np.array(grad, copy=True)
            else:
                buf = self._buffer(state, "momentum_buffer", param) * self.momentum
                buf += (1 - self.dampening) * grad
            state["momentum_buffer"] = buf
            grad = grad + self.momentum * buf if self.nesterov else buf
        state["step"] = state.get("step", 0) + 1
        return param - self.lr * grad, state


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as torch.optim.Adam.

    For each parameter p with gradient g, with m = v = 0 before step 1, at
    step t = 1, 2, ...::

        g = g + weight_decay * p                (L2 penalty, if weight_decay;
                                                 torch.optim.Adam's, not AdamW's)
        m = m + (1 - beta1) * (g - m)           (= beta1 * m + (1 - beta1) * g)
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : mapping name -> ndarray, or a model (see the module docstring)
    lr : float, >= 0
    betas : (float, float), each in [0, 1)
    eps : float, >= 0
    weight_decay : float, >= 0

    Examples
    --------
    The first step moves each parameter by about lr against its gradient's sign:

    >>> import numpy as np
    >>> from cylstm.optim import Adam
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> opt = Adam(params, lr=0.1)
    >>> opt.step({"w": np.array([0.5, -3.0])})
    >>> np.round(params["w"], 6)
    array([0.9, 2.1])
    """

    _hyperparameter_names = ("lr", "betas", "eps", "weight_decay")
    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Union[Mapping[str, NDArray[Any]], Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.lr = _check_number("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1 = _check_number("betas[0]", betas[0])
        beta2 = _check_number("betas[1]", betas[1])
        if beta1 >= 1 or beta2 >= 1:
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        self.betas = (beta1, beta2)
        self.eps = _check_number("eps", eps)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        super().__init__(params)

    def _update(self, param, grad, state):
        beta1, beta2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if "step" not in state:
            step, exp_avg, exp_avg_sq = 1, np.zeros_like(param), np.zeros_like(param)
        else:
            step = state["step"] + 1
            exp_avg = self._buffer(state, "exp_avg", param)
            exp_avg_sq = self._buffer(state, "exp_avg_sq", param)
        # The same operations in the same order as torch's single-tensor Adam.
        exp_avg = exp_avg + (1 - beta1) * (grad - exp_avg)
        exp_avg_sq = exp_avg_sq * beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = np.sqrt(exp_avg_sq)
        denom /= bias_correction2_sqrt
        denom += self.eps
        new_param = param - step_size * (exp_avg / denom)
        return new_param, {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def _check_number(name, value, positive=False):
    """A finite real number >= 0 (> 0 if positive) as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, "
                         f"got {value!r}")
    return value
