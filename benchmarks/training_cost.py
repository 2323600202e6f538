"""Suite 3: seconds per training epoch of budget-matched models on digits and MNIST-5k, with ratios to the ReLU MLP.

Run ``python -m benchmarks.training_cost [--quick]``; writes ``benchmarks/results/training_cost.json``. lutnet's
models (ReLU, GELU, LUT trained in linear and in nearest mode) run the trainer's own epoch
(``benchmarks.train_speed.epoch_runner``) at the accuracy suite's budget widths, interleaved epoch by epoch on one
thread; the peers report the median epoch of a short run of their runner in their own environments (same split,
batch 64, one thread). About 4 minutes on 2 cores (``--quick``: digits only, 3 epochs each, ~2 minutes).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.accuracy import BUDGETS, DEPTH, LEARNING_PEERS, TRAINED_MODELS, WORK, lutnet_width
from benchmarks.common import record, summarize
from benchmarks.peers.datasets import split_arrays, write_npz
from benchmarks.peers.setup import PEERS, ensure
from benchmarks.peers.smoke import WORK as PEER_WORK
from benchmarks.peers.smoke import run_learning_peer
from benchmarks.train_speed import epoch_runner
from lutnet.training.data import load_dataset
from lutnet.training.trainer import TrainConfig

DATASETS = ("digits", "mnist5k")


def lutnet_epochs(dataset: str, epochs: int, warmup: int) -> dict[str, list[float]]:
    """Epoch seconds of each lutnet model at its budget width, interleaved round by round."""
    data = load_dataset(dataset)
    runners = {}
    for name, overrides in TRAINED_MODELS.items():
        width, _ = lutnet_width(data, overrides, BUDGETS[dataset])
        runners[name] = epoch_runner(dataclasses.replace(TrainConfig(), **overrides, dataset=dataset, hidden=(width,) * DEPTH))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(warmup + epochs):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            if round_ >= warmup:
                samples[name].append(time.perf_counter() - start)
    return samples


def peer_epochs(dataset: str, epochs: int) -> dict[str, dict[str, Any]]:
    """Median epoch seconds reported by each peer's runner after ``epochs`` epochs at the budget."""
    split_path = WORK / f"{dataset}_training_cost.npz"
    write_npz(split_arrays(load_dataset(dataset)), split_path)
    reports = {}
    for name in LEARNING_PEERS:
        ensure(PEERS[name])
        result = run_learning_peer(PEERS[name], [split_path], params=BUDGETS[dataset], seeds=[0], max_epochs=epochs, max_seconds=1e9)
        run = result["runs"][0]
        reports[name] = {"median": run["seconds_per_epoch"], "n": run["epochs"], "params": result["params"], "hidden": result["layers"][1:-1]}
    return reports


def measure(datasets: Sequence[str], epochs: int, peer_epoch_count: int, with_peers: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    for folder in (WORK, PEER_WORK):
        folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for dataset in tqdm(datasets, desc="training cost", unit="data set"):
        samples = lutnet_epochs(dataset, epochs, warmup=1)
        seconds: dict[str, dict[str, Any]] = {name: summarize(values) for name, values in samples.items()}
        if with_peers:
            seconds |= peer_epochs(dataset, peer_epoch_count)
        relu = seconds["relu"]["median"]
        results[dataset] = {"seconds_per_epoch": seconds, "ratio_to_relu": {name: s["median"] / relu for name, s in seconds.items()},
                            "raw_seconds": samples, "train_rows": len(load_dataset(dataset).X_train)}
    return {"settings": {"budgets": {d: BUDGETS[d] for d in datasets}, "epochs": epochs, "peer_epochs": peer_epoch_count, "threads": 1,
                         "batch_size": TrainConfig().batch_size},
            "datasets": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, 3 timed epochs per model (a smoke run)")
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per lutnet model (default: 10)")
    parser.add_argument("--no-peers", action="store_true", help="lutnet models only")
    args = parser.parse_args(argv)
    datasets = ("digits",) if args.quick else DATASETS
    epochs = 3 if args.quick else args.epochs
    return record("benchmarks.training_cost", "training_cost", lambda: measure(datasets, epochs, 3 if args.quick else 5, not args.no_peers))


if __name__ == "__main__":
    raise SystemExit(main())
