"""Accuracy at equal inference latency: the LUT MLP against the ReLU MLP with widths matched on onnxruntime batch-1 latency.

Run ``python -m benchmarks.equal_latency [--quick]``; writes ``benchmarks/results/equal_latency.json``. Both models
keep the accuracy suite's depth (two equal hidden layers) and start from its equal-parameter widths. The LUT MLP's
width is searched first, so that its batch-1 latency matches the ReLU MLP's at the budget within 5%; where even the
narrowest LUT MLP is slower than that (at batch 1 a small graph's time is mostly per-node overhead, and a LUT layer
has more nodes than a Relu), the ReLU MLP's width is searched instead, to match the LUT MLP at its budget width.
The search times graphs of synthetic checkpoints (weights do not change a graph's speed): onnxruntime CPU, 1
thread, each candidate interleaved round by round with the reference, medians over three sessions of each graph. Both models are then trained on
every seed (``lutnet train`` defaults, as the accuracy suite does), exported and scored with onnxruntime on the
test split; the LUT model is also exported as nearest pockets with ``--max-error`` (``lut_linear_to_nearest``).
The three exported graphs of each seed are timed side by side at batch 1 and 256, and the ratio to the ReLU
MLP is recorded per seed. About 15 minutes on 2 cores (``--quick``: digits and wine, 1 seed, ~1 minute).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tqdm import tqdm

from benchmarks.accuracy import BUDGETS, DEPTH, LUTNET_MODELS, WORK, lutnet_width, summarize_rows, train_and_export
from benchmarks.common import write_results
from benchmarks.export_speed import interleaved, onnx_runner, synthetic_checkpoint
from lutnet.export.graph import build_graph
from lutnet.training import formulas
from lutnet.training.data import Dataset, load_dataset
from lutnet.training.trainer import TrainConfig, model_spec

TOLERANCE = 0.05  # the matched model's batch-1 latency within 5% of the reference's
SEEDS = (0, 1, 2, 3, 4)
BATCHES = (1, 256)
MIN_WIDTH, MAX_WIDTH = 4, 4096
SESSIONS = 3  # onnxruntime sessions timed per graph
MODELS = ("lut_linear", "lut_linear_to_nearest", "relu")
SEARCHED = {"lut_linear": LUTNET_MODELS["lut_linear"], "relu": LUTNET_MODELS["relu"]}
TRAINED = {name: LUTNET_MODELS[name] for name in MODELS}  # lut_linear_to_nearest: lut_linear's width, exported as pockets
DATASETS = tuple(d for d in BUDGETS if d not in formulas.TASKS)


def mlp_graph(data: Dataset, overrides: dict[str, Any], width: int) -> onnx.ModelProto:
    """The fused graph of a synthetic lutnet MLP of ``DEPTH`` hidden layers of ``width``."""
    config = dataclasses.replace(TrainConfig(), **overrides, dataset=data.name, hidden=(width,) * DEPTH)
    return build_graph(synthetic_checkpoint(model_spec(config, data)))


def session_timings(graphs: dict[str, onnx.ModelProto], x: np.ndarray, rounds: int) -> dict[str, dict[str, Any]]:
    """Each graph's latency on ``x`` in ``SESSIONS`` sessions, all interleaved round by round in one run: the median of the
    sessions' medians (and p10s, p90s), with every session's median.

    One graph's latency differs from session to session (the same graph, timed side by side), so one session can tip a match.
    """
    runners = {f"{name}#{i}": onnx_runner(graph, 1, x) for name, graph in graphs.items() for i in range(SESSIONS)}
    timings = interleaved(runners, len(x), rounds)
    measured = {}
    for name in graphs:
        sessions = [timings[f"{name}#{i}"] for i in range(SESSIONS)]
        measured[name] = {key: statistics.median(t[key] for t in sessions) for key in ("median", "p10", "p90")}
        measured[name] |= {"n": sum(t["n"] for t in sessions), "session_medians": [t["median"] for t in sessions]}
    return measured


def latency_ratio(candidate: onnx.ModelProto, reference: onnx.ModelProto, x: np.ndarray, rounds: int) -> float:
    """Median batch latency of ``candidate`` over ``reference``'s, interleaved round by round in one run."""
    timings = session_timings({"candidate": candidate, "reference": reference}, x, rounds)
    return timings["candidate"]["median"] / timings["reference"]["median"]


def match_width(ratio_at: Callable[[int], float], start: int) -> dict[int, float]:
    """Latency ratios probed from ``start`` until the width whose ratio is nearest 1 is bracketed and bisected.

    The ratio grows with width; the probes stop early once one lands within half the tolerance.
    """
    probes: dict[int, float] = {}

    def ratio(width: int) -> float:
        if width not in probes:
            probes[width] = ratio_at(width)
        return probes[width]

    def settled() -> bool:
        return any(abs(r - 1.0) <= TOLERANCE / 2 for r in probes.values())

    low = high = start
    while ratio(low) > 1.0 and low > MIN_WIDTH and not settled():
        high, low = low, max(MIN_WIDTH, low // 2)
    while ratio(high) < 1.0 and high < MAX_WIDTH and not settled():
        low, high = high, min(MAX_WIDTH, high * 2)
    while high - low > 1 and not settled():
        middle = (low + high) // 2
        low, high = (middle, high) if ratio(middle) < 1.0 else (low, middle)
    return probes


def nearest_one(probes: dict[int, float]) -> int:
    return min(probes, key=lambda width: abs(probes[width] - 1.0))


def search(data: Dataset, rounds: int) -> dict[str, Any]:
    """Widths of the LUT and ReLU MLPs at equal batch-1 latency, and every probe of the search."""
    budget = {name: lutnet_width(data, overrides, BUDGETS[data.name])[0] for name, overrides in SEARCHED.items()}
    x = np.random.default_rng(0).normal(size=(1, data.input_shape[0])).astype(np.float32)
    graph = lambda name, width: mlp_graph(data, SEARCHED[name], width)  # noqa: E731
    relu_at_budget = graph("relu", budget["relu"])
    probes = {"lut_linear": match_width(lambda w: latency_ratio(graph("lut_linear", w), relu_at_budget, x, rounds), budget["lut_linear"])}
    searched = "lut_linear"
    if abs(probes["lut_linear"][nearest_one(probes["lut_linear"])] - 1.0) > TOLERANCE:
        lut_at_budget = graph("lut_linear", budget["lut_linear"])
        probes["relu"] = match_width(lambda w: latency_ratio(graph("relu", w), lut_at_budget, x, rounds), budget["relu"])
        searched = "relu"
    widths = {**budget, searched: nearest_one(probes[searched])}
    return {"searched": searched, "reference": "relu" if searched == "lut_linear" else "lut_linear", "budget_widths": budget,
            "widths": widths, "probes": {name: [{"width": w, "over_reference": r} for w, r in sorted(p.items())] for name, p in probes.items()},
            "matched_over_reference": probes[searched][widths[searched]], "met": abs(probes[searched][widths[searched]] - 1.0) <= TOLERANCE}


def graph_latencies(graphs: dict[str, bytes], features: int, rounds: int) -> dict[str, Any]:
    """Each exported graph's median latency per batch size (interleaved in one run) and its ratio to the ReLU MLP's."""
    measured = {}
    for batch in BATCHES:
        x = np.random.default_rng(batch).normal(size=(batch, features)).astype(np.float32)
        timings = session_timings({name: onnx.load_from_string(model) for name, model in graphs.items()}, x, rounds)
        measured[f"batch_{batch}"] = {name: {**timing, "ratio_to_relu": timing["median"] / timings["relu"]["median"]}
                                      for name, timing in timings.items()}
    return measured


def run_dataset(name: str, seeds: Sequence[int], rounds: int, bar: tqdm) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The width search of one data set, then every model on every seed; one row per (model, seed)."""
    bar.set_postfix_str(f"{name} width search")
    found = search(load_dataset(name), rounds)
    rows = []
    for seed in seeds:
        data = load_dataset(name, seed=seed)
        graphs, seed_rows = {}, []
        with tempfile.TemporaryDirectory(dir=WORK) as runs:
            for model, overrides in TRAINED.items():
                bar.set_postfix_str(f"{name} seed {seed} {model}")
                width = found["widths"]["relu" if model == "relu" else "lut_linear"]
                row, graphs[model] = train_and_export(data, seed, overrides, width, Path(runs) / model)
                seed_rows.append({"dataset": name, "seed": seed, "model": model, **row})
                bar.update()
        latencies = graph_latencies(graphs, data.input_shape[0], rounds)
        rows += [{**row, "latency_s": {batch: per[row["model"]] for batch, per in latencies.items()}} for row in seed_rows]
    return found, rows


def summarize(rows: list[dict[str, Any]], tasks: dict[str, str]) -> list[dict[str, Any]]:
    """The accuracy suite's summary (mean, std, gap to ReLU) with each model's median latency and ratio to ReLU over seeds."""
    summary = summarize_rows(rows, tasks)
    for entry in summary:
        group = [r for r in rows if r["dataset"] == entry["dataset"] and r["model"] == entry["model"]]
        entry["latency_s"] = {batch: {"median": statistics.median(r["latency_s"][batch]["median"] for r in group),
                                      "ratio_to_relu": statistics.median(r["latency_s"][batch]["ratio_to_relu"] for r in group)}
                              for batch in group[0]["latency_s"]}
    return summary


def measure(out: str, datasets: Sequence[str], seeds: Sequence[int], rounds: int) -> Path:
    """Run every data set in turn, rewriting the results file after each, so an interrupted run keeps what it measured."""
    WORK.mkdir(parents=True, exist_ok=True)
    settings = {"datasets": list(datasets), "seeds": list(seeds), "budgets": {n: BUDGETS[n] for n in datasets}, "depth": DEPTH,
                "tolerance": TOLERANCE, "rounds": rounds, "sessions_per_graph": SESSIONS, "batches": list(BATCHES), "threads": 1, "models": TRAINED,
                "trainer_defaults": dataclasses.asdict(TrainConfig())}
    load_before = os.getloadavg()
    searches: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    tasks: dict[str, str] = {}
    with tqdm(total=len(datasets) * len(seeds) * len(TRAINED), desc="equal latency", unit="run") as bar:
        for name in datasets:
            searches[name], found = run_dataset(name, seeds, rounds, bar)
            rows += found
            tasks[name] = load_dataset(name).task
            path = write_results(out, {"settings": settings, "complete": len(tasks) == len(datasets),
                                       "load_average_before_after": [load_before, os.getloadavg()], "searches": searches,
                                       "runs": rows, "summary": summarize(rows, tasks)})
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits and wine, seed 0, fewer timing rounds (a plumbing check)")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, help="data sets to run (default: all five)")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"split/initialization seeds (default: {list(SEEDS)})")
    parser.add_argument("--out", default="equal_latency", help="results name under benchmarks/results")
    args = parser.parse_args(argv)
    datasets = args.datasets or (["digits", "wine"] if args.quick else list(DATASETS))
    seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    print(f"wrote {measure(args.out, datasets, seeds, 8 if args.quick else 30)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
