"""Why the default LUT-MLP wins or loses against the ReLU MLP: one-knob-at-a-time changes, scored on VALIDATION only.

Run ``python -m benchmarks.tuning [--quick] [--datasets ...]``; writes ``benchmarks/results/tuning.json``. Each
candidate changes one trainer setting (bins, calibration percentiles, table learning rate, smoothness weight,
init, the input std floor) from the ``lutnet train`` defaults, is re-sized to the data set's parameter budget (fewer bins leave room
for wider layers), trained on 3 seeds and scored on the validation split; the test split is never read.
About 10 minutes on 2 cores for digits and breast_cancer (``--quick``: 1 seed, 3 candidates).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.accuracy import BUDGETS, DEPTH, WORK, lutnet_width, metric_name
from benchmarks.common import write_results
from lutnet.checkpoint import read_checkpoint
from lutnet.training.data import load_dataset
from lutnet.training.trainer import TrainConfig, train

SEEDS = (0, 1, 2)
CANDIDATES: dict[str, dict[str, Any]] = {  # name -> TrainConfig overrides
    "relu_mlp": {"activation": "relu"},
    "lut_default": {},
    "bins_8": {"bins": 8},
    "bins_16": {"bins": 16},
    "bins_32": {"bins": 32},
    "percentiles_0.1_99.9": {"percentiles": (0.1, 99.9)},
    "percentiles_5_95": {"percentiles": (5.0, 95.0)},
    "table_lr_3e-3": {"table_lr": 3e-3},
    "table_lr_1e-2": {"table_lr": 1e-2},
    "table_lr_1e-4": {"table_lr": 1e-4},
    "smoothness_0": {"smoothness": 0.0},
    "smoothness_1e-2": {"smoothness": 1e-2},
    "init_gelu": {"init": "gelu"},
    "init_silu": {"init": "silu"},
    "init_leaky_relu": {"init": "leaky_relu"},
    "table_lr_3e-4": {"table_lr": 3e-4},
    "bins_16+table_lr_1e-4": {"bins": 16, "table_lr": 1e-4},
    "bins_16+table_lr_3e-4": {"bins": 16, "table_lr": 3e-4},
    "bins_16+smoothness_1e-2": {"bins": 16, "smoothness": 1e-2},
    "bins_16+percentiles_0.1_99.9": {"bins": 16, "percentiles": (0.1, 99.9)},
    "nearest": {"mode": "nearest"},
    "nearest+bins_16": {"mode": "nearest", "bins": 16},
    "nearest+bins_32": {"mode": "nearest", "bins": 32},
    "nearest+bins_128": {"mode": "nearest", "bins": 128},
    "nearest+bins_32+smoothness_1e-2": {"mode": "nearest", "bins": 32, "smoothness": 1e-2},
    "nearest+bins_16+table_lr_1e-4": {"mode": "nearest", "bins": 16, "table_lr": 1e-4},
}
# The recipe study: what lets the tables earn their keep, on function fitting beside the classification sets.
RECIPE = {
    "gelu_mlp": {"activation": "gelu"},
    "recalibrate_after_5": {"recalibrate_after": 5},
    "smoothness_1e-3": {"smoothness": 1e-3},
    "init_identity": {"init": "identity"},
    "depth_1": {"depth": 1},
    "depth_3": {"depth": 3},
    "table_constant": {"table_schedule": "constant"},
    "table_lr_3e-3+constant": {"table_lr": 3e-3, "table_schedule": "constant"},
    "recalibrate_after_3": {"recalibrate_after": 3},
    "recalibrate_after_10": {"recalibrate_after": 10},
    "recalibrate_after_5+table_lr_3e-3": {"recalibrate_after": 5, "table_lr": 3e-3},
    "recalibrate_after_5+bins_8": {"recalibrate_after": 5, "bins": 8},
    "recalibrate_after_5+table_lr_3e-3+bins_8": {"recalibrate_after": 5, "table_lr": 3e-3, "bins": 8},
    "recalibrate_after_5+constant": {"recalibrate_after": 5, "table_schedule": "constant"},
}
CANDIDATES.update(RECIPE)
# The peer-gap study: settings near DeepSplines' (one hidden layer, fewer bins) and the best single knobs of its first
# round on digits and MNIST-5k, paired.
PEER_GAP = {
    "bins_8+depth_1": {"bins": 8, "depth": 1},
    "bins_8+percentiles_0.1_99.9": {"bins": 8, "percentiles": (0.1, 99.9)},
    "depth_1+percentiles_0.1_99.9": {"depth": 1, "percentiles": (0.1, 99.9)},
}
CANDIDATES.update(PEER_GAP)
# The input-scaling study: a floor on each input feature's std, as a fraction of its train-split range, so that rarely
# nonzero features (MNIST-5k's border pixels) do not standardize far outside the tables' ranges. At 0.5 every std is
# half its feature's range: the peers' min-max scaling to a span of 2, centred on the mean instead of the midpoint.
STD_FLOOR = {
    "std_floor_0.05": {"std_floor": 0.05},
    "std_floor_0.1": {"std_floor": 0.1},
    "std_floor_0.2": {"std_floor": 0.2},
    "std_floor_0.5": {"std_floor": 0.5},
    "relu_mlp+std_floor_0.1": {"activation": "relu", "std_floor": 0.1},
    "relu_mlp+std_floor_0.2": {"activation": "relu", "std_floor": 0.2},
    "relu_mlp+std_floor_0.5": {"activation": "relu", "std_floor": 0.5},
}
CANDIDATES.update(STD_FLOOR)
QUICK = ("relu_mlp", "lut_default", "bins_16")


def validation_run(dataset: str, seed: int, overrides: dict[str, Any], out: Path, budget: bool = True) -> dict[str, Any]:
    """Train one model (budget-matched, or at the default width) and return its validation metrics.

    The trainer keeps the best-on-validation epoch.
    """
    data = load_dataset(dataset, seed=seed)
    overrides = dict(overrides)
    depth = overrides.pop("depth", DEPTH)
    width, params = lutnet_width(data, overrides, BUDGETS[dataset], depth) if budget else (TrainConfig().hidden[0], None)
    config = dataclasses.replace(TrainConfig(), **overrides, out=str(out), dataset=dataset, hidden=(width,) * depth,
                                 seed=seed, quiet=True, threads=1)
    result = train(config)
    val = {**result.metrics["val"], **({"relative_rmse": result.metrics["val"]["rmse"] / float(data.y_val.std())} if data.task == "regression" else {})}
    moved = read_checkpoint(out).info["training"]["table_movement"]
    return {"width": width, "params": params, "epochs": result.epochs_run, "val": val, "table_movement": moved}


def measure(datasets: Sequence[str], candidates: Sequence[str], seeds: Sequence[int], budget: bool = True) -> list[dict[str, Any]]:
    """Mean and std of the validation metric per (data set, candidate), with every run kept."""
    WORK.mkdir(parents=True, exist_ok=True)
    results = []
    with tqdm(total=len(datasets) * len(candidates) * len(seeds), desc="tuning", unit="run") as bar, \
            tempfile.TemporaryDirectory(dir=WORK) as runs:
        for dataset in datasets:
            key = metric_name(load_dataset(dataset).task, dataset)
            for name in candidates:
                bar.set_postfix_str(f"{dataset} {name}")
                runs_of = []
                for seed in seeds:
                    runs_of.append({"seed": seed, **validation_run(dataset, seed, CANDIDATES[name], Path(runs) / f"{dataset}-{name}-{seed}", budget)})
                    bar.update()
                values = [r["val"][key] for r in runs_of]
                results.append({"dataset": dataset, "candidate": name, "overrides": CANDIDATES[name], "metric": key,
                                "val_mean": statistics.fmean(values), "val_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                "val_loss_mean": statistics.fmean(r["val"]["loss"] for r in runs_of), "runs": runs_of})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits, seed 0, three candidates (a plumbing check)")
    parser.add_argument("--datasets", nargs="+", choices=list(BUDGETS), default=None, help="default: digits breast_cancer")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=None, help="default: all")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help=f"default: {list(SEEDS)}")
    parser.add_argument("--default-width", action="store_true", help="train at the default hidden widths instead of the budget")
    parser.add_argument("--out", default="tuning", help="results file name under benchmarks/results (default: tuning)")
    args = parser.parse_args(argv)
    datasets = args.datasets or (["digits"] if args.quick else ["digits", "breast_cancer"])
    candidates = args.candidates or (QUICK if args.quick else list(CANDIDATES))
    seeds = args.seeds or ((0,) if args.quick else SEEDS)
    results = measure(datasets, candidates, seeds, budget=not args.default_width)
    budgets = None if args.default_width else {d: BUDGETS[d] for d in datasets}
    settings = {"datasets": list(datasets), "seeds": list(seeds), "budgets": budgets, "split": "validation (the test split is never read)",
                "trainer_defaults": dataclasses.asdict(TrainConfig())}
    path = write_results(args.out, {"settings": settings, "candidates": results})
    for r in results:
        print(f"{r['dataset']:<14} {r['candidate']:<22} val {r['metric']} {r['val_mean']:.4f} +- {r['val_std']:.4f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
