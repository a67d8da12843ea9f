"""The ONNX LSTM node's variant attributes (clip, input_forget, activations with
activation_alpha and activation_beta) as cylstm's configuration has them, and back.

The activations are cylstm's (f, g, h) Activation triples per direction.
ONNX spells the activations in CamelCase ("HardSigmoid"); onnxruntime matches them case-
insensitively and refuses other spellings ("hard_sigmoid"), and so does cylstm. The lists
alpha and beta are consumed in order by the activations that take them: each takes the next
alpha (LeakyRelu, ThresholdedRelu, Elu, Affine, ScaledTanh, HardSigmoid) and the next beta
(Affine, ScaledTanh, HardSigmoid), or a default once a list has run out; onnxruntime ignores
values left over, and so does cylstm. The defaults are onnxruntime's, which computes these
models: LeakyRelu 0.01, HardSigmoid 0.2 and 0.5, Elu 1.0, and 0.0 for the others
(ThresholdedRelu's alpha too, where the ONNX operator of that name says 1.0; Affine and
ScaledTanh are no ONNX operators any more). cylstm writes every value explicitly.
The attributes hold float32: a value is read as the shortest decimal that rounds to it
(see float_attribute), so an alpha of 0.3 written by cylstm reads back as 0.3.
"""
from __future__ import annotations

import math

import numpy as np

from ._params import DEFAULT_ACTIVATIONS, Activation

ONNX_NAMES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "affine": "Affine",
              "leaky_relu": "LeakyRelu", "thresholded_relu": "ThresholdedRelu",
              "scaled_tanh": "ScaledTanh", "hard_sigmoid": "HardSigmoid", "elu": "Elu",
              "softsign": "Softsign", "softplus": "Softplus"}
_BY_LOWER_ONNX_NAME = {onnx_name.lower(): name for name, onnx_name in ONNX_NAMES.items()}
# How many of (alpha, beta) each activation takes (onnxruntime's rnn_helpers.cc).
_ARGUMENTS = {"affine": 2, "leaky_relu": 1, "thresholded_relu": 1, "scaled_tanh": 2,
              "hard_sigmoid": 2, "elu": 1}
_DEFAULTS = {"leaky_relu": (0.01, 0.0), "hard_sigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}


# The peephole blocks of P: ONNX i, o, f; cylstm i, f, o (the same swap both ways).
PEEPHOLE_ORDER = (0, 2, 1)


def variants_from_attributes(attributes, directions) -> dict:
    """{clip, input_forget, activations} of one node's attributes ({name: value});
    a ValueError for values onnxruntime refuses too."""
    clip = attributes.get("clip")
    if clip is not None and not 0 < clip < math.inf:
        raise ValueError(f"clip must be a positive finite number, got {clip!r}")
    input_forget = attributes.get("input_forget", 0)
    if input_forget not in (0, 1):
        raise ValueError(f"input_forget must be 0 or 1, got {input_forget!r}")
    activations = activations_from_onnx(
        attributes.get("activations", []), attributes.get("activation_alpha", []),
        attributes.get("activation_beta", []), directions)
    return dict(clip=None if clip is None else float_attribute(clip),
                input_forget=bool(input_forget), activations=activations)


def variant_attributes(config) -> dict:
    """The LSTM node's attributes for a Config's variants ({} for the plain cell)."""
    attributes = onnx_activation_attributes(config.activations)
    if config.clip is not None:
        attributes["clip"] = config.clip
    if config.input_forget:
        attributes["input_forget"] = 1
    return attributes


def activations_from_onnx(names, alphas, betas, num_directions) -> tuple:
    """cylstm's `activations` (() for the default cell) from the attributes' values;
    a ValueError for a wrong count or an unknown name."""
    if not names:
        return ()
    if len(names) != 3 * num_directions:
        raise ValueError(
            f"attribute 'activations' must list 3 per direction ({3 * num_directions}), got "
            f"{len(names)}: {[name[:40] for name in names[:12]]}")
    alphas, betas = iter(alphas), iter(betas)
    resolved = []
    for given in names:
        name = _BY_LOWER_ONNX_NAME.get(given.lower())
        if name is None:
            raise ValueError(
                f"unknown activation {given[:40]!r} in attribute 'activations'; the ONNX "
                f"LSTM has {sorted(ONNX_NAMES.values())}")
        alpha, beta = _DEFAULTS.get(name, (0.0, 0.0))
        count = _ARGUMENTS.get(name, 0)
        if count >= 1:
            alpha = next(alphas, alpha)
        if count >= 2:
            beta = next(betas, beta)
        resolved.append(Activation(name, float_attribute(alpha), float_attribute(beta)))
    triples = tuple(tuple(resolved[k:k + 3]) for k in range(0, len(resolved), 3))
    return () if all(triple == DEFAULT_ACTIVATIONS for triple in triples) else triples


def onnx_activation_attributes(activations) -> dict:
    """The LSTM node's attributes for cylstm's `activations` ({} for the default cell)."""
    if not activations:
        return {}
    names, alphas, betas = [], [], []
    for triple in activations:
        for activation in triple:
            names.append(ONNX_NAMES[activation.name])
            count = _ARGUMENTS.get(activation.name, 0)
            if count >= 1:
                alphas.append(activation.alpha)
            if count >= 2:
                betas.append(activation.beta)
    attributes = {"activations": names}
    if alphas:
        attributes["activation_alpha"] = alphas
    if betas:
        attributes["activation_beta"] = betas
    return attributes


def float_attribute(value) -> float:
    """A float32 attribute as the shortest decimal that rounds to it (0.3, not
    0.30000001192092896): what was written, when it was a float32-exact decimal."""
    return float(str(np.float32(value)))
