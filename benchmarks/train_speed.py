"""Seconds per training epoch of LUT models against the same-shape ReLU models, with the trainer's own epoch loop.

Run ``python -m benchmarks.train_speed [--quick] [--threads N]``; writes ``benchmarks/results/train_speed.json``.
Every candidate trains on digits with the ``lutnet train`` defaults (hidden sizes, batch size, optimizer,
smoothness penalty) but for what it names: the variants measure the pure-torch lookup instead of the
native CPU operator (``lutnet.training.native``; the trainer's default wherever a C++ compiler is found), AdamW
stepped tensor by tensor (unfused) and batch sizes 128 and 256, each LUT model against the ReLU model
of the same setting. Candidates are
interleaved epoch by epoch, so the ratios come from one run under the same machine load. Each epoch is
timed twice: wall clock, and CPU time of this process, which a busy machine disturbs much less (with one
thread the two agree on a quiet one).
Target: LUT-MLP epoch <= 1.3x the ReLU-MLP epoch.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import torch

import lutnet.training.lut
from benchmarks.common import summarize, write_results
from lutnet.training.trainer import (
    Distributed,
    TrainConfig,
    calibrate_model,
    epoch_batches,
    make_optimizer,
    model_spec,
    prepare_model,
    train_epoch,
)
from lutnet.training.data import load_dataset
from lutnet.training.lut import LUTActivation
from lutnet.training.native import kernel

TARGET_RATIO = 1.3
# name -> overrides of the TrainConfig defaults; benchmark only: "fused": False steps AdamW tensor by tensor,
# "native": False uses the pure-torch lookup (the CUDA path, and the CPU one without a C++ compiler)
CANDIDATES: dict[str, dict[str, Any]] = {
    "mlp_relu": {"activation": "relu"},
    "mlp_lut_linear": {"activation": "lut", "mode": "linear"},
    "mlp_lut_nearest": {"activation": "lut", "mode": "nearest"},
    "mlp_lut_linear_torch_lookup": {"activation": "lut", "mode": "linear", "native": False},
    "mlp_lut_nearest_torch_lookup": {"activation": "lut", "mode": "nearest", "native": False},
    "convnet_relu": {"model": "convnet", "hidden": (16, 32), "activation": "relu"},
    "convnet_lut_linear": {"model": "convnet", "hidden": (16, 32), "activation": "lut"},
    "mlp_relu_unfused_adamw": {"activation": "relu", "fused": False},
    "mlp_lut_linear_unfused_adamw": {"activation": "lut", "fused": False},
    "mlp_relu_batch128": {"activation": "relu", "batch_size": 128},
    "mlp_lut_linear_batch128": {"activation": "lut", "batch_size": 128},
    "mlp_relu_batch256": {"activation": "relu", "batch_size": 256},
    "mlp_lut_linear_batch256": {"activation": "lut", "batch_size": 256},
}
CHOSEN = "mlp_lut_linear/mlp_relu"  # the trainer's defaults: the configuration the target is about
RATIOS = {  # ratio name -> (candidate, baseline)
    CHOSEN: ("mlp_lut_linear", "mlp_relu"),
    "mlp_lut_nearest/mlp_relu": ("mlp_lut_nearest", "mlp_relu"),
    "mlp_lut_linear_torch_lookup/mlp_relu": ("mlp_lut_linear_torch_lookup", "mlp_relu"),
    "mlp_lut_nearest_torch_lookup/mlp_relu": ("mlp_lut_nearest_torch_lookup", "mlp_relu"),
    "convnet_lut_linear/convnet_relu": ("convnet_lut_linear", "convnet_relu"),
    "mlp_lut_linear_unfused_adamw/mlp_relu_unfused_adamw": ("mlp_lut_linear_unfused_adamw", "mlp_relu_unfused_adamw"),
    "mlp_lut_linear_batch128/mlp_relu_batch128": ("mlp_lut_linear_batch128", "mlp_relu_batch128"),
    "mlp_lut_linear_batch256/mlp_relu_batch256": ("mlp_lut_linear_batch256", "mlp_relu_batch256"),
}


def epoch_runner(config: TrainConfig, fused: bool = True, native: bool = True) -> Callable[[], None]:
    """One training epoch of a fresh model of ``config`` per call (the trainer's code path, shuffles included).

    ``native=False``: the LUT layers use the pure-torch lookup during the epoch.
    """
    data = load_dataset(config.dataset, seed=config.seed)
    data = data.as_images() if config.model == "convnet" else data
    torch.manual_seed(config.seed)
    model = prepare_model(model_spec(config, data), data, config)
    X = torch.as_tensor(data.X_train, dtype=torch.float32)
    y = torch.as_tensor(data.y_train)
    calibrate_model(model, X[: config.calibration_size], config.percentiles)
    optimizer = make_optimizer(model, config)
    for group in optimizer.param_groups:
        group["fused"] = fused
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10_000)
    epochs = iter(range(10**9))

    def run() -> None:
        batches = epoch_batches(len(X), config.batch_size, config.seed, next(epochs), Distributed())
        with torch_lookup(not native):
            train_epoch(model, model, optimizer, scheduler, X, y, batches, config.smoothness, world=1)

    return run


def torch_lookup(active: bool = True) -> Any:
    """A context in which the LUT layers use the pure-torch lookup, not the native kernel (when ``active``)."""
    return mock.patch.object(lutnet.training.lut, "kernel", lambda: None) if active else contextlib.nullcontext()


def candidate_runner(overrides: dict[str, Any]) -> Callable[[], None]:
    settings = dict(overrides)
    fused, native = settings.pop("fused", True), settings.pop("native", True)
    return epoch_runner(dataclasses.replace(TrainConfig(), **settings), fused=fused, native=native)


def measure(repeats: int, warmup: int, only: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per epoch of every candidate, interleaved round by round."""
    runners = {name: candidate_runner(overrides) for name, overrides in CANDIDATES.items() if only is None or name in only}
    samples: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in runners} for clock in ("wall", "cpu")}
    for round_ in range(warmup + repeats):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            if round_ >= warmup:
                samples["wall"][name].append(time.perf_counter() - wall)
                samples["cpu"][name].append(time.process_time() - cpu)
    return samples


def step_parts(repeats: int, calls: int = 200) -> dict[str, float]:
    """CPU microseconds per call of the pieces a LUT-MLP step adds to a ReLU-MLP step, at the default sizes.

    One layer's forward + backward (LUT, on the native kernel and on the torch lookup, and ReLU), one table's
    smoothness gradient (both ways), and AdamW's step over the default LUT-MLP's parameters, fused or tensor
    by tensor, with the tables in their own group or not.
    """
    defaults = TrainConfig()
    width = defaults.hidden[0]
    layer = LUTActivation(width, bins=defaults.bins, extrapolate=defaults.extrapolate)
    x, grad = torch.randn(defaults.batch_size, width), torch.randn(defaults.batch_size, width)
    backward = lambda f: lambda: f(x.detach().requires_grad_(True)).backward(grad)  # noqa: E731
    parts = {"lut_layer_forward_backward": backward(layer), "relu_layer_forward_backward": backward(torch.relu),
             "smoothness_gradient": layer.smoothness_gradient}
    for name in ("lut_layer_forward_backward", "smoothness_gradient"):
        parts[f"{name}_torch_lookup"] = parts[name]  # timed under torch_lookup()
    for fused in (True, False):
        for groups in (1, 2):
            parts[f"adamw_step_{'fused' if fused else 'unfused'}_{groups}_group{'s' if groups > 1 else ''}"] = adamw_step(fused, groups)
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeats):
        for name, part in parts.items():
            with torch_lookup(name.endswith("_torch_lookup")):
                cpu = time.thread_time()
                for _ in range(calls):
                    part()
                samples[name].append((time.thread_time() - cpu) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def adamw_step(fused: bool, groups: int) -> Callable[[], None]:
    """``optimizer.step`` of the default digits LUT-MLP's parameters (random gradients)."""
    config = TrainConfig()
    data = load_dataset(config.dataset, seed=config.seed)
    model = prepare_model(model_spec(config, data), data, config)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer = make_optimizer(model, config) if groups == 2 else torch.optim.AdamW(model.parameters(), lr=config.lr)
    for group in optimizer.param_groups:
        group["fused"] = fused
    return optimizer.step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per candidate (default: 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed epochs per candidate first (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--quick", action="store_true", help="5 timed epochs, linear-mode MLPs only (a smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    native_kernel = kernel() is not None  # built here, before any timing
    repeats = 5 if args.quick else args.repeats
    only = ["mlp_relu", "mlp_lut_linear", "mlp_lut_linear_torch_lookup"] if args.quick else None
    samples = measure(repeats, args.warmup, only)
    parts = step_parts(repeats)
    medians = {clock: {name: summarize(s) for name, s in by_name.items()} for clock, by_name in samples.items()}
    ratios = {clock: {label: m[a]["median"] / m[b]["median"] for label, (a, b) in RATIOS.items() if a in m and b in m}
              for clock, m in medians.items()}
    defaults = TrainConfig()
    path = write_results("train_speed", {
        "settings": {"dataset": defaults.dataset, "hidden": list(defaults.hidden), "batch_size": defaults.batch_size, "bins": defaults.bins,
                     "smoothness": defaults.smoothness, "threads": args.threads, "repeats": repeats, "candidates": CANDIDATES,
                     "native_kernel": native_kernel},
        "seconds_per_epoch": medians,
        "raw_seconds": samples,
        "ratios": ratios,
        "step_parts_cpu_us": parts,
        "chosen": {"ratio": CHOSEN, "batch_size": defaults.batch_size, "optimizer": "AdamW(fused=True)",
                   "lookup": "native CPU operator" if native_kernel else "torch (no C++ compiler found)",
                   "wall": ratios["wall"][CHOSEN], "cpu": ratios["cpu"][CHOSEN]},
        "target": {CHOSEN: TARGET_RATIO},
        "meets_target": {clock: r[CHOSEN] <= TARGET_RATIO for clock, r in ratios.items()},
    })
    for name in medians["wall"]:
        wall, cpu = medians["wall"][name], medians["cpu"][name]
        print(f"{name:<22} wall {wall['median'] * 1e3:7.1f} ms/epoch (p10 {wall['p10'] * 1e3:.1f}, p90 {wall['p90'] * 1e3:.1f})"
              f"   cpu {cpu['median'] * 1e3:7.1f} ms/epoch")
    for label in ratios["wall"]:
        print(f"{label:<34} wall {ratios['wall'][label]:.2f}x   cpu {ratios['cpu'][label]:.2f}x")
    for name, microseconds in parts.items():
        print(f"{name:<34} cpu {microseconds:7.1f} us/call")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
