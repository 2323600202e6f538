"""Training (torch): the LUT activation, the helpers that work on any module, the mlp/convnet families, data sets, the trainer and plots."""
from __future__ import annotations

from lutnet.errors import require_extra

require_extra("lutnet.training", "train", "torch")

from lutnet.training.convert import (
    add_smoothness_gradients,
    calibrate,
    lut_layers,
    lut_parameters,
    optimizer_groups,
    other_parameters,
    replace_activations,
    smoothness,
)
from lutnet.training.lut import ChannelError, LUTActivation
from lutnet.training.plot import plot_activations

__all__ = [
    "ChannelError",
    "LUTActivation",
    "add_smoothness_gradients",
    "calibrate",
    "lut_layers",
    "lut_parameters",
    "optimizer_groups",
    "other_parameters",
    "plot_activations",
    "replace_activations",
    "smoothness",
]
