"""Training ranges: each input feature's range in the train split, and each LUT layer's tables, as the model card carries them.

An input feature is one element of a flattened row (a pixel of one channel for a convnet). Its range is
a pair of robust percentiles of the train split, so a few outliers do not widen it. A LUT layer's table
range ``[lo_c, hi_c]`` is where its channel was trained (``lutnet.lut``); its knots draw the learned curve.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from lutnet.errors import LutnetError

DEFAULT_PERCENTILES = (0.5, 99.5)
CHECKPOINT_KEY = "input_range"  # key of config.json (the free-form part of contract A) that holds the input range


@dataclass(frozen=True)
class InputRange:
    """Per-feature ``[lo, hi]`` of the train split: the ``percentiles`` (in percent) of each feature."""

    lo: np.ndarray  # (F,) float64, F = elements of one row
    hi: np.ndarray
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES

    @classmethod
    def of_samples(cls, x: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> InputRange:
        """The range of rows ``x`` (``[N, ...]``), each feature's ``percentiles`` over the N rows."""
        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        lo, hi = np.percentile(rows, percentiles, axis=0)
        return cls(lo, hi, (float(percentiles[0]), float(percentiles[1])))

    def to_dict(self) -> dict[str, Any]:
        return {"percentiles": list(self.percentiles), "lo": _floats(self.lo), "hi": _floats(self.hi)}

    @classmethod
    def from_dict(cls, data: Any, features: int | None = None) -> InputRange:
        """Parse and check a range (``features``: the row width it must cover); errors say what was expected."""
        where = "input range"
        _expect(isinstance(data, dict) and {"percentiles", "lo", "hi"} <= set(data), where, "an object with percentiles, lo and hi", data)
        lo, hi, percentiles = _numbers(data["lo"], f"{where} lo"), _numbers(data["hi"], f"{where} hi"), _numbers(data["percentiles"], f"{where} percentiles")
        _expect(len(percentiles) == 2 and 0 <= percentiles[0] < percentiles[1] <= 100, f"{where} percentiles", "[low, high] within 0..100", data["percentiles"])
        _expect(lo.shape == hi.shape and lo.ndim == 1 and len(lo) >= 1, f"{where} lo and hi", "two lists of the same length", f"{lo.shape} and {hi.shape}")
        _expect(features is None or len(lo) == features, f"{where} width", f"{features} features (one per element of a row)", len(lo))
        _expect(bool(np.all(lo <= hi)), f"{where} lo and hi", "lo <= hi for every feature", "lo > hi")
        return cls(lo, hi, (float(percentiles[0]), float(percentiles[1])))


@dataclass(frozen=True)
class LayerTable:
    """One LUT layer as served: knots ``[C or 1, K+1]`` over each channel's range ``[lo, hi]``."""

    knots: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {"lo": _floats(self.lo), "hi": _floats(self.hi), "knots": [_floats(row) for row in np.asarray(self.knots)]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "LUT table") -> LayerTable:
        _expect(isinstance(data, dict) and {"lo", "hi", "knots"} <= set(data), where, "an object with lo, hi and knots", type(data).__name__)
        knots, lo, hi = _numbers(data["knots"], f"{where} knots"), _numbers(data["lo"], f"{where} lo"), _numbers(data["hi"], f"{where} hi")
        rows_ok = knots.ndim == 2 and knots.shape[1] >= 2 and lo.shape == hi.shape == (knots.shape[0],)
        _expect(rows_ok, where, "knots [C, K+1] (K >= 1) with C values of lo and of hi", f"knots {list(knots.shape)}, lo {list(lo.shape)}, hi {list(hi.shape)}")
        _expect(bool(np.all(hi > lo)), f"{where} range", "hi > lo in every channel", "hi <= lo")
        return cls(knots, lo, hi)


def checkpoint_input_range(info: dict[str, Any], features: int) -> InputRange | None:
    """The input range a checkpoint's config.json stores under ``CHECKPOINT_KEY``; None for checkpoints from before it."""
    return InputRange.from_dict(info[CHECKPOINT_KEY], features) if CHECKPOINT_KEY in info else None


def tables_to_json(tables: list[LayerTable]) -> str:
    return json.dumps([table.to_dict() for table in tables], separators=(",", ":"))


def tables_from_json(text: str) -> list[LayerTable]:
    """The LUT tables of a model card entry; an unreadable entry is a ``LutnetError``."""
    data = _loads(text, "LUT tables")
    _expect(isinstance(data, list), "LUT tables", "a list with one object per LUT layer", type(data).__name__)
    return [LayerTable.from_dict(item, f"LUT table of layer {i}") for i, item in enumerate(data)]


def input_range_to_json(input_range: InputRange) -> str:
    return json.dumps(input_range.to_dict(), separators=(",", ":"))


def input_range_from_json(text: str, features: int | None = None) -> InputRange:
    return InputRange.from_dict(_loads(text, "input range"), features)


def _floats(values: np.ndarray) -> list[float]:
    # The graph computes in float32: each value's shortest float32 text is exact there and keeps the card small.
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1)]


def _numbers(value: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise LutnetError(where, expected="numbers", got=repr(value)[:80]) from None
    _expect(bool(np.all(np.isfinite(array))), where, "finite numbers", "NaN or Inf")
    return array


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise LutnetError(where, expected="JSON", got=str(exc)) from None


def _expect(ok: bool, where: str, expected: str, got: object) -> None:
    if not ok:
        raise LutnetError(where, expected=expected, got=got if isinstance(got, (str, int)) else repr(got)[:80])

