"""Traffic and latency metrics: plain counters per model version, exposed as Prometheus series from a registry the
app owns, as Triton-style statistics, and as recent p50/p95/p99; with the input range and saturation monitors' counts.

A request only bumps integers and bucket counts; the Prometheus metric families are built when
``/metrics`` is scraped (a custom collector), which keeps the per-request cost to about a microsecond.

Several worker processes: each one writes all its counts to ``metrics_dir/<pid>.json`` every
``PUBLISH_S`` seconds (and at shutdown), and a scrape or statistics request, whichever worker answers
it, adds the files of the others to its own live counts. Counters of a worker that exited stay
counted, as Prometheus expects of counters. prometheus_client's multiprocess mode would cover only the
Prometheus series (not the statistics route's percentiles and windows) and costs a locked write to a
memory-mapped file per update on the hot path, where this costs nothing per request.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from lutnet.atomic import write_bytes_atomic
from lutnet.service.monitor import RangeCounts, SaturationWindow

SECONDS_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
OUTCOMES = ("success", "client_error", "unavailable", "server_error")
PERCENTILES = (50, 95, 99)
SUCCESS_PHASES = ("success", "queue", "compute_input", "compute_infer", "compute_output")  # Triton statistics of answered requests
HISTOGRAMS = {  # attribute of ModelStats -> (metric name, help, buckets)
    "latency": ("lutnet_request_duration_seconds", "End-to-end time of successful requests.", SECONDS_BUCKETS),
    "queue": ("lutnet_queue_duration_seconds", "Time a request waited before its batch ran.", SECONDS_BUCKETS),
    "compute": ("lutnet_compute_duration_seconds", "Time of one onnxruntime call.", SECONDS_BUCKETS),
    "batch_size": ("lutnet_batch_size", "Rows in one onnxruntime call.", BATCH_BUCKETS),
}
PUBLISH_S = 1.0  # with several workers: how old another worker's counts in a scrape may be


class BucketCounts:
    """A histogram as bucket counts and a sum; Prometheus ``le`` semantics (a value on a bound counts in that bucket)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def absorb(self, state: list[Any]) -> None:
        """Add another worker's ``[counts, total]``."""
        self.counts = [a + b for a, b in zip(self.counts, state[0], strict=True)]
        self.total += state[1]

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count of values <= le)`` pairs ending with ``+Inf``."""
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append((floatToGoString(bound), running))
        return buckets


class ServiceMetrics:
    """Every metric of one app; one ``ModelStats`` per model version, kept across reloads of that version."""

    def __init__(self, window: int, shared_dir: Path | None = None) -> None:
        self.window = window
        self.shared_dir = shared_dir
        self._models: dict[tuple[str, int], ModelStats] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def for_model(self, name: str, version: int) -> ModelStats:
        """The statistics of ``name`` version ``version``, created on first use."""
        key = (name, version)
        if key not in self._models:
            self._models[key] = ModelStats(self.window, name, version)
        return self._models[key]

    def publish(self) -> None:
        """Write this worker's counts for the other workers to read (with a ``shared_dir`` only)."""
        if self.shared_dir is not None:
            write_bytes_atomic(self.shared_dir / f"{os.getpid()}.json", orjson.dumps([stats.state() for stats in self._models.values()]))

    def view(self) -> dict[tuple[str, int], ModelStats]:
        """Every model version's counts over all workers: this one's live, the others' as last published."""
        if self.shared_dir is None:
            return self._models
        states: dict[tuple[str, int], list[dict[str, Any]]] = {key: [stats.state()] for key, stats in self._models.items()}
        for state in self._published_elsewhere():
            states.setdefault((state["name"], state["version"]), []).append(state)
        return {key: ModelStats.combined(parts) for key, parts in states.items()}

    def _published_elsewhere(self) -> Iterator[dict[str, Any]]:
        assert self.shared_dir is not None
        own = f"{os.getpid()}.json"
        for path in self.shared_dir.glob("*.json"):
            if path.name == own:
                continue
            try:
                yield from orjson.loads(path.read_bytes())
            except FileNotFoundError:  # replaced between the listing and the read: the next scrape reads the new one
                continue

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector protocol: the metric families, built from every model's counters now."""
        requests = CounterMetricFamily("lutnet_requests", "Inference requests by model, version and outcome.", labels=["model", "version", "outcome"])
        histograms = {key: HistogramMetricFamily(name, text, labels=["model", "version"]) for key, (name, text, _) in HISTOGRAMS.items()}
        labels = ["model", "version"]
        rows = CounterMetricFamily("lutnet_input_rows", "Rows checked against the training range of the inputs.", labels=labels)
        outside = CounterMetricFamily("lutnet_input_out_of_range_rows", "Rows with any input feature outside its training range.", labels=labels)
        recent = GaugeMetricFamily("lutnet_input_out_of_range_ratio", "Share of rows out of the training range in the recent requests.", labels=labels)
        saturation = GaugeMetricFamily(
            "lutnet_lut_saturation_ratio",
            "Share of a LUT layer's pre-activations outside its tables, in the recent sampled requests.",
            labels=[*labels, "layer"],
        )
        for (name, version), stats in sorted(self.view().items()):
            for outcome, count in stats.outcomes.items():
                requests.add_metric([name, str(version), outcome], count)
            for key, family in histograms.items():
                counts: BucketCounts = getattr(stats, key)
                family.add_metric([name, str(version)], counts.cumulative(), counts.total)
            if stats.range is not None:
                rows.add_metric([name, str(version)], stats.range.rows)
                outside.add_metric([name, str(version)], stats.range.out_of_range_rows)
                fraction = stats.range.recent_fraction()
                if fraction is not None:
                    recent.add_metric([name, str(version)], fraction)
            ratios = stats.saturation.ratios() if stats.saturation is not None else None
            for layer, ratio in enumerate(ratios or []):
                saturation.add_metric([name, str(version), str(layer)], ratio)
        yield requests
        yield from histograms.values()
        yield from (rows, outside, recent, saturation)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class ModelStats:
    """Counters of one model version: outcomes, histograms, Triton statistics, a window of recent latencies."""

    def __init__(self, window: int | None, name: str, version: int) -> None:
        self.name, self.version = name, version
        self.window = window
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.latency, self.queue, self.compute = (BucketCounts(SECONDS_BUCKETS) for _ in range(3))
        self.batch_size = BucketCounts(BATCH_BUCKETS)
        self._recent: deque[int] = deque(maxlen=window)
        # Set by the model's InputMonitor when its card has a training range, and a monitor graph to sample.
        self.range: RangeCounts | None = None
        self.saturation: SaturationWindow | None = None
        # Triton statistics: every answered request counts once in each phase, so one count and a sum of ns per phase.
        self._succeeded = 0
        self._success_ns = [0] * len(SUCCESS_PHASES)
        self._failed = [0, 0]  # count, cumulative ns
        self._batches: dict[int, list[int]] = {}
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0

    def record_success(self, total_ns: int, decode_ns: int, queue_ns: int, compute_ns: int, encode_ns: int, rows: int) -> None:
        """One answered request: its end-to-end time and the time of each phase (positional, for ``loop.call_soon``)."""
        self._succeeded += 1
        sums = self._success_ns  # in the order of SUCCESS_PHASES
        sums[0] += total_ns
        sums[1] += queue_ns
        sums[2] += decode_ns
        sums[3] += compute_ns
        sums[4] += encode_ns
        self.inference_count += rows
        self.last_inference_ms = time.time_ns() // 1_000_000
        self._recent.append(total_ns)
        self.outcomes["success"] += 1
        self.latency.observe(total_ns * 1e-9)
        self.queue.observe(queue_ns * 1e-9)

    def record_failure(self, *, total_ns: int, status_code: int) -> None:
        """One request answered with an error."""
        self._failed[0] += 1
        self._failed[1] += total_ns
        self.outcomes["unavailable" if status_code == 503 else "client_error" if status_code < 500 else "server_error"] += 1

    def record_execution(self, rows: int, compute_ns: int) -> None:
        """One onnxruntime call over ``rows`` rows."""
        self.execution_count += 1
        batch = self._batches.setdefault(rows, [0, 0])
        batch[0] += 1
        batch[1] += compute_ns
        self.compute.observe(compute_ns * 1e-9)
        self.batch_size.observe(rows)

    def state(self) -> dict[str, Any]:
        """Every count, as JSON-ready values, for another worker's ``combined``."""
        return {
            "name": self.name,
            "version": self.version,
            "outcomes": self.outcomes,
            "histograms": {key: [getattr(self, key).counts, getattr(self, key).total] for key in HISTOGRAMS},
            "recent": list(self._recent),
            "succeeded": self._succeeded,
            "success_ns": self._success_ns,
            "failed": self._failed,
            "batches": [[size, *pair] for size, pair in self._batches.items()],
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "last_inference_ms": self.last_inference_ms,
            "range": self.range.state() if self.range is not None else None,
            "saturation": self.saturation.state() if self.saturation is not None else None,
        }

    @classmethod
    def combined(cls, states: list[dict[str, Any]]) -> ModelStats:
        """The counts of several workers' ``state()`` of one model version added up; recent windows are joined."""
        stats = cls(None, states[0]["name"], states[0]["version"])
        for state in states:
            stats._absorb(state)
        return stats

    def _absorb(self, state: dict[str, Any]) -> None:
        for outcome, count in state["outcomes"].items():
            self.outcomes[outcome] += count
        for key, pair in state["histograms"].items():
            getattr(self, key).absorb(pair)
        self._recent.extend(state["recent"])
        self._succeeded += state["succeeded"]
        self._success_ns = [a + b for a, b in zip(self._success_ns, state["success_ns"], strict=True)]
        self._failed = [a + b for a, b in zip(self._failed, state["failed"], strict=True)]
        for size, count, ns in state["batches"]:
            batch = self._batches.setdefault(size, [0, 0])
            batch[0] += count
            batch[1] += ns
        self.inference_count += state["inference_count"]
        self.execution_count += state["execution_count"]
        self.last_inference_ms = max(self.last_inference_ms, state["last_inference_ms"])
        if state["range"] is not None:
            if self.range is None:
                self.range = RangeCounts(len(state["range"]["below"]), tuple(state["range"]["percentiles"]), None)
            self.range.absorb(state["range"])
        if state["saturation"] is not None:
            if self.saturation is None:
                self.saturation = SaturationWindow(state["saturation"]["layers"], None)
            self.saturation.absorb(state["saturation"])

    def recent_percentiles(self) -> dict[str, Any]:
        """p50 / p95 / p99 of the end-to-end latency of the most recent successful requests, in milliseconds."""
        if not self._recent:
            return {"window": 0, **{f"p{q}_ms": None for q in PERCENTILES}}
        values = np.percentile(np.fromiter(self._recent, dtype=np.int64, count=len(self._recent)), PERCENTILES) / 1e6
        return {"window": len(self._recent), **{f"p{q}_ms": round(float(v), 4) for q, v in zip(PERCENTILES, values, strict=True)}}

    def to_triton(self) -> dict[str, Any]:
        """The model's entry of the v2 statistics extension (``model_stats``), plus the recent percentiles."""
        duration = lambda pair: {"count": pair[0], "ns": pair[1]}  # noqa: E731
        empty = {"count": 0, "ns": 0}
        return {
            "name": self.name,
            "version": str(self.version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {phase: duration((self._succeeded, ns)) for phase, ns in zip(SUCCESS_PHASES, self._success_ns, strict=True)}
            | {"fail": duration(self._failed), "cache_hit": empty, "cache_miss": empty},
            "batch_stats": [
                {"batch_size": size, "compute_input": empty, "compute_infer": duration(pair), "compute_output": empty}
                for size, pair in sorted(self._batches.items())
            ],
            "recent_latency": self.recent_percentiles(),
            "input_range": self.range.to_dict() if self.range is not None else None,
            "lut_saturation": self.saturation.to_dict() if self.saturation is not None else None,
        }

    def summary(self) -> str:
        """One log line: request count and recent percentiles."""
        recent = self.recent_percentiles()
        if not recent["window"]:
            return f"{self.name} v{self.version}: no requests yet"
        p = "  ".join(f"p{q} {recent[f'p{q}_ms']:.3f} ms" for q in PERCENTILES)
        return f"{self.name} v{self.version}: {self._succeeded} ok, {self._failed[0]} failed; last {recent['window']}: {p}"
