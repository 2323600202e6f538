"""The default request body limit: the largest body the loaded models can need, so no client can make the server hold more."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lutnet.service.settings import MIB, Settings

if TYPE_CHECKING:
    from lutnet.service.runtime import LoadedModel

# A float64 printed in full takes at most 24 characters ("-1.2345678901234567e-300"); with its separator,
# nesting brackets and some white space, 32 bytes cover one value of a JSON tensor. Binary tensors take less.
JSON_BYTES_PER_VALUE = 32
# Room for everything around the values: names, datatypes, shapes, id, parameters.
ENVELOPE_BYTES = 64 * 1024
# A model with free dimensions besides the batch has no largest request: it gets this much.
FREE_SHAPE_BYTES = 64 * MIB


def largest_request_values(model: LoadedModel) -> int | None:
    """Values in the model's largest request (its max batch size of every input); None when a free dimension leaves it unbounded."""
    total = 0
    for spec in model.inputs:
        dims = (model.max_batch_size, *spec.shape[1:]) if model.max_batch_size is not None else spec.shape
        if any(d < 0 for d in dims):
            return None
        total += math.prod(dims)
    return total


def request_bytes(model: LoadedModel) -> int:
    """The largest body a request to ``model`` needs: its largest request as JSON text, plus the envelope."""
    values = largest_request_values(model)
    return FREE_SHAPE_BYTES if values is None else ENVELOPE_BYTES + values * JSON_BYTES_PER_VALUE


def body_limit(settings: Settings, models: Iterable[LoadedModel]) -> int:
    """``max_request_bytes`` when the operator set it; else what the largest request of any loaded model needs."""
    if settings.max_request_bytes is not None:
        return settings.max_request_bytes
    return max((request_bytes(model) for model in models), default=ENVELOPE_BYTES)
