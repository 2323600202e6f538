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

log = logging.getLogger("lutnet.serve")

SAMPLE_ROWS = 64  # rows of a sampled request the monitor graph runs on


FLUSH_REQUESTS = 64  # requests whose batches are kept, then checked in one vectorized pass
FLUSH_ROWS = 1024  # ... or sooner, once they hold this many rows (bounds the memory kept)


class RangeCounts:
    """Rows served, rows with any feature outside the training range ``[lo, hi]``, and how often each feature was below or above it.

    ``record`` only keeps a request's batch; the batches are checked together once ``FLUSH_REQUESTS`` requests or
    ``FLUSH_ROWS`` rows are kept, and before any count is read. One pass over many requests costs a small fraction of
    a pass per request, whose fixed numpy overhead would dominate a batch-1 request's check.
    """

    def __init__(self, features: int, percentiles: tuple[float, float], window: int | None, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.percentiles = percentiles
        self.bounds = bounds  # None for counts that only add up other workers' (ModelStats.combined)
        self.features = features
        self._rows = 0
        self._out_of_range_rows = 0
        self._below = np.zeros(features, dtype=np.int64)
        self._above = np.zeros(features, dtype=np.int64)
        self._recent: deque[tuple[int, int]] = deque(maxlen=window)  # (rows, out-of-range rows) of recent requests
        self._kept: list[np.ndarray] = []
        self._kept_rows = 0

    # Every count is read through a property that first checks the kept batches, so no reader sees stale counts.
    @property
    def rows(self) -> int:
        self.flush()
        return self._rows

    @property
    def out_of_range_rows(self) -> int:
        self.flush()
        return self._out_of_range_rows

    @property
    def below(self) -> np.ndarray:
        self.flush()
        return self._below

    @property
    def above(self) -> np.ndarray:
        self.flush()
        return self._above

    @property
    def recent(self) -> deque[tuple[int, int]]:
        self.flush()
        return self._recent

    def record(self, rows: np.ndarray) -> None:
        """Count a decoded batch ``[N, F]`` (NaN counts as inside: it compares false)."""
        self._kept.append(rows)
        self._kept_rows += len(rows)
        if len(self._kept) >= FLUSH_REQUESTS or self._kept_rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Check the kept batches against the bounds, all in one pass."""
        kept = [rows for rows in self._kept if len(rows)]
        self._kept, self._kept_rows = [], 0
        if not kept or self.bounds is None:
            return
        lo, hi = self.bounds
        x = np.concatenate(kept) if len(kept) > 1 else kept[0]
        below, above = x < lo, x > hi
        outside = (below | above).any(axis=1)
        if len(x) == len(kept):  # one row per request (batch-1 traffic): each row's verdict is its request's
            sizes, per_request = [1] * len(kept), outside.astype(np.int64).tolist()
        else:
            sizes = [len(rows) for rows in kept]
            starts = np.concatenate(([0], np.cumsum(sizes[:-1], dtype=np.int64)))
            per_request = np.add.reduceat(outside.astype(np.int64), starts).tolist()
        self._rows += len(x)
        self._recent.extend(zip(sizes, per_request, strict=True))
        if outside.any():
            self._out_of_range_rows += int(outside.sum())
            self._below += below.sum(axis=0)
            self._above += above.sum(axis=0)

    def recent_fraction(self) -> float | None:
        """Out-of-range rows over rows in the recent requests; None before any."""
        recent = self.recent
        rows = sum(n for n, _ in recent)
        return sum(out for _, out in recent) / rows if rows else None

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
        self._rows += state["rows"]
        self._out_of_range_rows += state["out_of_range_rows"]
        self._below += np.asarray(state["below"], dtype=np.int64)
        self._above += np.asarray(state["above"], dtype=np.int64)
        self._recent.extend((rows, out) for rows, out in state["recent"])

    def to_dict(self) -> dict[str, Any]:
        """The statistics route's entry: totals, the recent fraction, and the features out of range most often first."""
        below, above = self.below, self.above
        counts = below + above
        top = np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]
        return {
            "percentiles": list(self.percentiles),
            "rows": self.rows,
            "out_of_range_rows": self.out_of_range_rows,
            "recent": {"requests": len(self.recent), "out_of_range_fraction": self.recent_fraction()},
            "features": [{"feature": int(i), "below": int(below[i]), "above": int(above[i])} for i in top],
        }


class SaturationWindow:
    """Per LUT layer, the fraction of pre-activations outside the tables over the recent sampled requests, weighted by rows.

    Running sums follow the window as samples enter and leave it, so reading the ratios after each sample (to warn)
    costs the same whatever the window's size.
    """

    def __init__(self, layers: int, window: int | None) -> None:
        self.layers = layers
        self.recent: deque[tuple[int, list[float]]] = deque(maxlen=window)
        self._rows = 0
        self._saturated = [0.0] * layers  # sum over the window of rows * fraction, per layer

    def record(self, rows: int, fractions: np.ndarray | list[float]) -> None:
        entry = (int(rows), [float(f) for f in fractions])
        if self.recent.maxlen is not None and len(self.recent) == self.recent.maxlen:
            self._move(*self.recent[0], -1)
        self.recent.append(entry)
        self._move(*entry, 1)

    def _move(self, rows: int, fractions: list[float], sign: int) -> None:
        self._rows += sign * rows
        self._saturated = [total + sign * rows * f for total, f in zip(self._saturated, fractions, strict=False)]

    def ratios(self) -> list[float] | None:
        """Per layer, saturated pre-activations over all in the window; None before the first sample."""
        if not self.recent:
            return None
        if self._rows <= 0:
            return [0.0] * self.layers
        return [max(total, 0.0) / self._rows for total in self._saturated]

    def state(self) -> dict[str, Any]:
        return {"layers": self.layers, "recent": list(self.recent)}

    def absorb(self, state: dict[str, Any]) -> None:
        for rows, fractions in state["recent"]:
            self.record(rows, fractions)

    def to_dict(self) -> dict[str, Any]:
        ratios = self.ratios()
        return {"samples": len(self.recent), "layers": [{"layer": i, "ratio": None if ratios is None else ratios[i]} for i in range(self.layers)]}


class InputMonitor:
    """Watches one loaded model version's requests: the range check on each, the monitor graph on every ``every``-th."""

    def __init__(
        self,
        input_name: str,
        counts: RangeCounts | None,
        saturation: tuple[Callable[[dict[str, np.ndarray]], np.ndarray], SaturationWindow, int] | None,
        label: str,
        warn_above: list[float],
    ) -> None:
        self.input_name = input_name
        self.counts = counts
        self._saturation = saturation
        self._countdown = saturation[2] if saturation else 0
        self._label = label
        self._warn_above = warn_above
        self._warned: set[int] = set()

    def observe(self, inputs: dict[str, np.ndarray], rows: int) -> None:
        """Count one answered request's decoded inputs (called after the response)."""
        if self.counts is not None:
            x = inputs[self.input_name]
            self.counts.record(x if x.ndim == 2 else x.reshape(len(x), -1))
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
        """Log once when a layer's saturation rises past its threshold, and again only after it has fallen back below it."""
        for layer, (ratio, above) in enumerate(zip(ratios, self._warn_above, strict=False)):
            if ratio > above and layer not in self._warned:
                self._warned.add(layer)
                log.warning(
                    "%s: LUT layer %d saturation %.3f is above %.3f (its level on the export data plus the warning margin): "
                    "more of its pre-activations fall outside the trained tables (inputs drifted from the training data?)",
                    self._label,
                    layer,
                    ratio,
                    above,
                )
            elif ratio <= above:
                self._warned.discard(layer)
