"""A model's Triton ``config.pbtxt``: the few fields the server reads, and how they combine with the settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import ModelLoadError
from service.settings import Settings

CONFIG_FILE = "config.pbtxt"
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,;<>]|[^\s{}\[\]:,;<>"#]+|#[^\n]*|\s+')
_CLOSING = {"{": "}", "<": ">"}


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
        fields = parse_pbtxt(path.read_text(encoding="utf-8"), str(path))
        batching = fields.get("dynamic_batching", [None])[0]
        delay = batching.get("max_queue_delay_microseconds", [None])[0] if isinstance(batching, dict) else None
        max_batch = fields.get("max_batch_size", [None])[0]
        for name, value in (("max_batch_size", max_batch), ("max_queue_delay_microseconds", delay)):
            if value is not None and (type(value) is not int or value < 0):
                raise ModelLoadError(f"{path} field {name}", expected="a non-negative integer", got=repr(value))
        return cls(max_batch_size=max_batch, max_queue_delay_us=delay)


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


def parse_pbtxt(text: str, source: str = "config.pbtxt") -> dict[str, list[Any]]:
    """Protobuf text format as nested dicts; every field maps to the list of its values (fields may repeat)."""
    tokens = [t for t in _TOKEN.findall(text) if not t.isspace() and not t.startswith("#")]
    if "".join(_TOKEN.findall(text)) != text:
        raise ModelLoadError(source, expected="protobuf text format", got="characters it cannot hold")
    fields, _ = _message(tokens, 0, None, source)
    return fields


def _message(tokens: list[str], pos: int, closing: str | None, source: str) -> tuple[dict[str, list[Any]], int]:
    fields: dict[str, list[Any]] = {}
    while pos < len(tokens) and tokens[pos] != closing:
        name = tokens[pos]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ModelLoadError(source, expected="a field name", got=repr(name))
        pos += 1 + (pos + 1 < len(tokens) and tokens[pos + 1] == ":")
        values, pos = _values(tokens, pos, source)
        fields.setdefault(name, []).extend(values)
        pos += pos < len(tokens) and tokens[pos] in ",;"
    if closing is not None and pos >= len(tokens):
        raise ModelLoadError(source, expected=f"a closing {closing!r}", got="the end of the file")
    return fields, pos + (closing is not None)


def _values(tokens: list[str], pos: int, source: str) -> tuple[list[Any], int]:
    if pos >= len(tokens):
        raise ModelLoadError(source, expected="a value", got="the end of the file")
    token = tokens[pos]
    if token in _CLOSING:
        value, pos = _message(tokens, pos + 1, _CLOSING[token], source)
        return [value], pos
    if token == "[":
        values, pos = [], pos + 1
        while pos < len(tokens) and tokens[pos] != "]":
            items, pos = _values(tokens, pos, source)
            values.extend(items)
            pos += pos < len(tokens) and tokens[pos] == ","
        return values, pos + 1
    return [_scalar(token)], pos + 1


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return token[1:-1]
    for kind in (int, float):
        try:
            return kind(token)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(token, token)
