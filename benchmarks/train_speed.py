"""Seconds per training epoch of LUT models against the same-shape ReLU models, with the trainer's own epoch loop.

Run ``python -m benchmarks.train_speed [--quick] [--threads N]``; writes ``benchmarks/results/train_speed.json``.
Every candidate trains on digits with the ``lutnet train`` defaults (hidden sizes, batch size, optimizer,
smoothness penalty); candidates are interleaved epoch by epoch, so the ratios come from one run under the
same machine load. Each epoch is timed twice: wall clock, and CPU time of this process, which a busy
machine disturbs much less (with one thread the two agree on a quiet one).
Target (issue 2): LUT-MLP epoch <= 1.3x the ReLU-MLP epoch.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch

from benchmarks.common import summarize, write_results
from training.trainer import (
    Distributed,
    TrainConfig,
    calibrate_model,
    epoch_batches,
    make_optimizer,
    model_spec,
    prepare_model,
    train_epoch,
)
from training.data import load_dataset

TARGET_RATIO = 1.3
CANDIDATES = {  # name -> overrides of the TrainConfig defaults
    "mlp_relu": {"activation": "relu"},
    "mlp_lut_linear": {"activation": "lut", "mode": "linear"},
    "mlp_lut_nearest": {"activation": "lut", "mode": "nearest"},
    "convnet_relu": {"model": "convnet", "hidden": (16, 32), "activation": "relu"},
    "convnet_lut_linear": {"model": "convnet", "hidden": (16, 32), "activation": "lut"},
}
RATIOS = {  # ratio name -> (candidate, baseline)
    "mlp_lut_linear/mlp_relu": ("mlp_lut_linear", "mlp_relu"),
    "mlp_lut_nearest/mlp_relu": ("mlp_lut_nearest", "mlp_relu"),
    "convnet_lut_linear/convnet_relu": ("convnet_lut_linear", "convnet_relu"),
}


def epoch_runner(config: TrainConfig) -> Callable[[], None]:
    """One training epoch of a fresh model of ``config`` per call (the trainer's code path, shuffles included)."""
    data = load_dataset(config.dataset, seed=config.seed)
    data = data.as_images() if config.model == "convnet" else data
    torch.manual_seed(config.seed)
    model = prepare_model(model_spec(config, data), data, config)
    X = torch.as_tensor(data.X_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train)
    calibrate_model(model, X[: config.calibration_size], config.percentiles)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10_000)
    epochs = iter(range(10**9))

    def run() -> None:
        batches = epoch_batches(len(X), config.batch_size, config.seed, next(epochs), Distributed())
        train_epoch(model, model, optimizer, scheduler, X, y, batches, config.smoothness, world=1)

    return run


def measure(repeats: int, warmup: int, only: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per epoch of every candidate, interleaved round by round."""
    runners = {name: epoch_runner(dataclasses.replace(TrainConfig(), **overrides))
               for name, overrides in CANDIDATES.items() if only is None or name in only}
    samples: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in runners} for clock in ("wall", "cpu")}
    for round_ in range(warmup + repeats):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            if round_ >= warmup:
                samples["wall"][name].append(time.perf_counter() - wall)
                samples["cpu"][name].append(time.process_time() - cpu)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per candidate (default: 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs per candidate first (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--quick", action="store_true", help="5 timed epochs, MLPs only (a smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 5 if args.quick else args.repeats
    only = ["mlp_relu", "mlp_lut_linear"] if args.quick else None
    samples = measure(repeats, args.warmup, only)
    medians = {clock: {name: summarize(s) for name, s in by_name.items()} for clock, by_name in samples.items()}
    ratios = {clock: {label: m[a]["median"] / m[b]["median"] for label, (a, b) in RATIOS.items() if a in m and b in m}
              for clock, m in medians.items()}
    defaults = TrainConfig()
    path = write_results("train_speed", {
        "settings": {"dataset": defaults.dataset, "hidden": list(defaults.hidden), "batch_size": defaults.batch_size, "bins": defaults.bins,
                     "smoothness": defaults.smoothness, "threads": args.threads, "repeats": repeats, "candidates": CANDIDATES},
        "seconds_per_epoch": medians,
        "raw_seconds": samples,
        "ratios": ratios,
        "target": {"mlp_lut_linear/mlp_relu": TARGET_RATIO},
        "meets_target": {clock: r["mlp_lut_linear/mlp_relu"] <= TARGET_RATIO for clock, r in ratios.items()},
    })
    for name in medians["wall"]:
        wall, cpu = medians["wall"][name], medians["cpu"][name]
        print(f"{name:<22} wall {wall['median'] * 1e3:7.1f} ms/epoch (p10 {wall['p10'] * 1e3:.1f}, p90 {wall['p90'] * 1e3:.1f})"
              f"   cpu {cpu['median'] * 1e3:7.1f} ms/epoch")
    for label in ratios["wall"]:
        print(f"{label:<34} wall {ratios['wall'][label]:.2f}x   cpu {ratios['cpu'][label]:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
