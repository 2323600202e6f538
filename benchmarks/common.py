"""Shared plumbing of every benchmark suite: machine facts, timing medians, results files."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lutnet.atomic import write_text_atomic
from lutnet.errors import LutnetError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("lutnet", "numpy", "torch", "onnx", "onnxruntime", "fastapi", "uvicorn", "scikit-learn")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, Python, library versions, date."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


@dataclass(frozen=True)
class PairedRounds:
    """Calls timed in interleaved rounds: every sample of each, and each round's median of each."""

    samples: dict[str, list[float]]
    rounds: list[dict[str, float]]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, numerator: str, denominator: str) -> float:
        """The median over rounds of ``numerator``'s median over ``denominator``'s in the same round.

        Both medians of a round were timed within moments of each other, so slow drift on a shared machine (another
        tenant, a clock change) moves both alike, where it could tilt a ratio of medians pooled over the whole run.
        """
        return statistics.median(r[numerator] / r[denominator] for r in self.rounds)


def paired_rounds(calls: dict[str, Callable[[], object]], *, rounds: int, repeats: int, warmup: int = 3) -> PairedRounds:
    """Time every call ``repeats`` times per round (after ``warmup`` untimed calls), the calls one after another, for ``rounds`` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    medians = []
    for _ in range(rounds):
        this_round = {name: time_call(call, repeats=repeats, warmup=warmup) for name, call in calls.items()}
        medians.append({name: statistics.median(v) for name, v in this_round.items()})
        for name, v in this_round.items():
            samples[name] += v
    return PairedRounds(samples, medians)


def summarize(samples: list[float]) -> dict[str, float]:
    """Median with spread (p10/p90) of timing samples in seconds."""
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"median": statistics.median(ordered), "p10": pick(0.1), "p90": pick(0.9), "n": len(ordered)}


def write_results(suite: str, results: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<suite>.json`` atomically, with machine facts attached."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{suite}.json"
    write_text_atomic(path, json.dumps({"suite": suite, "machine": machine_info(), **results}, indent=2) + "\n")
    return path


def record(program: str, suite: str, measure: Callable[[], dict[str, Any]]) -> int:
    """Run ``measure`` and write its results as ``suite``; a ``LutnetError`` becomes one line and exit code 2."""
    try:
        path = write_results(suite, measure())
    except LutnetError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
