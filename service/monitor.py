"""What a served model sees: input features outside their training range (every request) and table saturation (a sample).

Both are counted after the response, in the event loop's next pass, like the latency statistics. The
range check is a few vectorized comparisons on the batch the request already decoded; saturation
runs the exporter's monitor graph (``lutnet.repository.MONITOR_FILE``) on at most ``SAMPLE_ROWS`` rows
of every n-th request, so its cost is spread thin and bounded.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from lutnet.ranges import InputRange

log = logging.getLogger("lutnet.serve")

SAMPLE_ROWS = 64  # rows of a sampled request the monitor graph runs on


class RangeCounts:
    """Rows served, rows with any feature outside the training range, and how often each feature was below or above it."""

    def __init__(self, features: int, percentiles: tuple[float, float], window: int | None) -> None:
        self.percentiles = percentiles
        self.rows = 0
        self.out_of_range_rows = 0
        self.below = np.zeros(features, dtype=np.int64)
        self.above = np.zeros(features, dtype=np.int64)
        self.recent: deque[tuple[int, int]] = deque(maxlen=window)  # (rows, out-of-range rows) of recent requests

    def record(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Count a decoded batch ``[N, F]`` against the range ``[lo, hi]`` (NaN counts as inside: it compares false)."""
        below, above = rows < lo, rows > hi
        outside = int(np.count_nonzero((below | above).any(axis=1)))
        self.rows += len(rows)
        self.recent.append((len(rows), outside))
        if outside:
            self.out_of_range_rows += outside
            self.below += below.sum(axis=0)
            self.above += above.sum(axis=0)

    def recent_fraction(self) -> float | None:
        """Out-of-range rows over rows in the recent requests; None before any."""
        rows = sum(n for n, _ in self.recent)
        return sum(out for _, out in self.recent) / rows if rows else None

    def state(self) -> dict[str, Any]:
        return {
            "percentiles": list(self.percentiles),
            "rows": self.rows,
            "out_of_range_rows": self.out_of_range_rows,
            "below": self.below.tolist(),
            "above": self.above.tolist(),
            "recent": list(self.recent),
        }

    def absorb(self, state: dict[str, Any]) -> None:
        """Add another worker's counts (``state()``) to these."""
        self.rows += state["rows"]
        self.out_of_range_rows += state["out_of_range_rows"]
        self.below += np.asarray(state["below"], dtype=np.int64)
        self.above += np.asarray(state["above"], dtype=np.int64)
        self.recent.extend((rows, out) for rows, out in state["recent"])

    def to_dict(self) -> dict[str, Any]:
        """The statistics route's entry: totals, the recent fraction, and the features out of range most often first."""
        counts = self.below + self.above
        top = np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]
        return {
            "percentiles": list(self.percentiles),
            "rows": self.rows,
            "out_of_range_rows": self.out_of_range_rows,
            "recent": {"requests": len(self.recent), "out_of_range_fraction": self.recent_fraction()},
            "features": [{"feature": int(i), "below": int(self.below[i]), "above": int(self.above[i])} for i in top],
        }


class SaturationWindow:
    """Per LUT layer, the fraction of pre-activations outside the tables over the recent sampled requests, weighted by rows."""

    def __init__(self, layers: int, window: int | None) -> None:
        self.layers = layers
        self.recent: deque[tuple[int, list[float]]] = deque(maxlen=window)

    def record(self, rows: int, fractions: np.ndarray) -> None:
        self.recent.append((rows, [float(f) for f in fractions]))

    def ratios(self) -> list[float] | None:
        """Per layer, saturated pre-activations over all in the window; None before the first sample."""
        if not self.recent:
            return None
        rows = np.array([n for n, _ in self.recent], dtype=np.float64)
        fractions = np.array([f for _, f in self.recent], dtype=np.float64)  # (samples, layers)
        return (rows @ fractions / rows.sum()).tolist()

    def state(self) -> dict[str, Any]:
        return {"layers": self.layers, "recent": list(self.recent)}

    def absorb(self, state: dict[str, Any]) -> None:
        self.recent.extend((rows, fractions) for rows, fractions in state["recent"])

    def to_dict(self) -> dict[str, Any]:
        ratios = self.ratios()
        return {"samples": len(self.recent), "layers": [{"layer": i, "ratio": None if ratios is None else ratios[i]} for i in range(self.layers)]}


class InputMonitor:
    """Watches one loaded model version's requests: the range check on each, the monitor graph on every ``every``-th."""

    def __init__(
        self,
        input_name: str,
        input_range: InputRange | None,
        counts: RangeCounts | None,
        saturation: tuple[Callable[[dict[str, np.ndarray]], np.ndarray], SaturationWindow, int] | None,
        label: str,
        warn_above: float,
    ) -> None:
        self.input_name = input_name
        self.counts = counts
        if input_range is not None:
            self._lo, self._hi = input_range.lo.astype(np.float32), input_range.hi.astype(np.float32)
        self._saturation = saturation
        self._countdown = saturation[2] if saturation else 0
        self._label = label
        self._warn_above = warn_above
        self._warned: set[int] = set()

    def observe(self, inputs: dict[str, np.ndarray], rows: int) -> None:
        """Count one answered request's decoded inputs (called after the response)."""
        if self.counts is not None:
            x = inputs[self.input_name]
            self.counts.record(x.reshape(len(x), -1), self._lo, self._hi)
        if self._saturation is not None:
            self._countdown -= 1
            if self._countdown <= 0:
                self._sample({name: array[:SAMPLE_ROWS] for name, array in inputs.items()}, min(rows, SAMPLE_ROWS))

    def _sample(self, feeds: dict[str, np.ndarray], rows: int) -> None:
        run, window, every = self._saturation  # type: ignore[misc]
        self._countdown = every
        window.record(rows, run(feeds))
        self._warn(window.ratios() or [])

    def _warn(self, ratios: list[float]) -> None:
        """Log once when a layer's saturation rises past the threshold, and again only after it has fallen back below it."""
        for layer, ratio in enumerate(ratios):
            if ratio > self._warn_above and layer not in self._warned:
                self._warned.add(layer)
                log.warning(
                    "%s: LUT layer %d saturation %.3f is above %.3f: that share of its pre-activations falls outside the "
                    "trained tables (inputs drifted from the training data?)",
                    self._label,
                    layer,
                    ratio,
                    self._warn_above,
                )
            elif ratio <= self._warn_above:
                self._warned.discard(layer)
