"""A model's Triton ``config.pbtxt``: the few fields the server reads, and how they combine with the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lutnet import model_config
from lutnet.repository import CONFIG_FILE
from lutnet.service.errors import ModelLoadError
from lutnet.service.settings import Settings


@dataclass(frozen=True)
class ModelConfig:
    """What ``config.pbtxt`` says about batching; ``None`` where it says nothing."""

    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None

    @classmethod
    def read(cls, directory: Path) -> ModelConfig:
        """The config of the model in ``directory``; an empty one when it has no ``config.pbtxt``."""
        path = directory / CONFIG_FILE
        if not path.is_file():
            return cls()
        try:
            config = model_config.parse(path.read_text(encoding="utf-8"), str(path))
        except (model_config.ModelConfigError, UnicodeDecodeError) as exc:
            raise ModelLoadError(str(exc)) from None
        if config.max_batch_size < 0:
            raise ModelLoadError(f"{path} field max_batch_size", expected="a non-negative integer", got=config.max_batch_size)
        batching = config.dynamic_batching
        return cls(
            max_batch_size=config.max_batch_size if config.HasField("max_batch_size") else None,
            max_queue_delay_us=batching.max_queue_delay_microseconds if batching.HasField("max_queue_delay_microseconds") else None,
        )


@dataclass(frozen=True)
class BatchingPolicy:
    """How one model is batched: explicit settings win, then ``config.pbtxt``, then the settings' defaults.

    Whether batching is on at all is the ``batching`` setting alone: ``lutnet export`` writes a
    ``dynamic_batching`` block into every config for Triton, and for tiny models serving batched
    measures slower at low concurrency (benchmarks/serve_speed.py), so that block does not switch it on here.
    """

    enabled: bool
    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    request_timeout_s: float

    @classmethod
    def resolve(cls, settings: Settings, config: ModelConfig) -> BatchingPolicy:
        def pick(setting: str, from_config: Any) -> Any:
            return getattr(settings, setting) if settings.explicit(setting) or from_config is None else from_config

        # Triton's max_batch_size 0 means "no batch dimension"; the server still needs a row limit, so the setting applies.
        return cls(
            enabled=settings.batching,
            max_batch_size=pick("max_batch_size", config.max_batch_size or None),
            max_queue_delay_us=pick("max_queue_delay_us", config.max_queue_delay_us),
            max_queue_size=settings.max_queue_size,
            request_timeout_s=settings.request_timeout_s,
        )
