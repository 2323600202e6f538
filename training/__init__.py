"""Training (torch): the LUT activation, the mlp/convnet families, data sets, the trainer and activation plots."""

from __future__ import annotations

from lutnet.errors import require_extra

require_extra("lutnet.training", "train", "torch")
