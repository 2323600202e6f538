"""The default body limit: the largest request the loaded models accept, as JSON text."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from lutnet.service.limits import ENVELOPE_BYTES, FREE_SHAPE_BYTES, JSON_BYTES_PER_VALUE, body_limit, largest_request_values, request_bytes
from lutnet.service.protocol import TensorSpec
from lutnet.service.settings import Settings


def model(max_batch_size: int | None, *shapes: tuple[int, ...]) -> Any:
    return SimpleNamespace(max_batch_size=max_batch_size, inputs=tuple(TensorSpec(f"x{i}", "FP32", shape) for i, shape in enumerate(shapes)))


def test_a_batched_model_needs_its_max_batch_of_every_input() -> None:
    assert largest_request_values(model(32, (-1, 8), (-1, 2, 3))) == 32 * 8 + 32 * 6
    assert request_bytes(model(32, (-1, 8))) == ENVELOPE_BYTES + 32 * 8 * JSON_BYTES_PER_VALUE


def test_a_fixed_shape_model_needs_its_shape_and_a_free_dimension_leaves_it_unbounded() -> None:
    assert largest_request_values(model(None, (4, 8))) == 32
    assert largest_request_values(model(None, (-1, 8))) is None
    assert largest_request_values(model(16, (-1, -1))) is None
    assert request_bytes(model(None, (-1, 8))) == FREE_SHAPE_BYTES


def test_the_limit_is_the_largest_models_unless_set() -> None:
    models = [model(32, (-1, 8)), model(1024, (-1, 64))]
    assert body_limit(Settings(), models) == request_bytes(models[1])
    assert body_limit(Settings(), []) == ENVELOPE_BYTES
    assert body_limit(Settings(max_request_bytes=1000), models) == 1000
