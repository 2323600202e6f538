"""What every learning-peer runner shares: sizing to a parameter budget, the training loop, scoring and ONNX export.

Runs inside a peer's own virtual environment (torch, numpy, onnx, onnxruntime; no lutnet extras), started as
``<venv>/bin/python -m benchmarks.peers.run_<peer>`` from the repository root; it prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.peers.datasets import SplitArrays, read_npz
from lutnet.errors import LutnetError

PARAMETER_TOLERANCE = 0.05
DEFAULT_LR = 1e-3  # best or tied-best validation accuracy for all three peers on digits among 1e-2, 3e-3, 1e-3
ModelBuilder = Callable[[list[int], int], nn.Module]  # (layer widths [features, hidden..., outputs], seed) -> model


@dataclass(frozen=True)
class RunConfig:
    """One training run of one peer on one split."""

    splits: tuple[Path, ...]  # one split for every seed, or one per seed (seed i trains on split i)
    target_params: int
    depth: int
    seeds: tuple[int, ...]
    max_epochs: int
    max_seconds: float
    batch_size: int
    lr: float
    threads: int
    onnx_out: Path | None


def parse_config(argv: Sequence[str] | None, description: str) -> RunConfig:
    """Read the runner's command line (the same for every peer) into a RunConfig."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("splits", type=Path, nargs="+", metavar="split",
                        help=".npz written by benchmarks.peers.datasets.write_npz; several: one per seed, in the order of --seeds")
    parser.add_argument("--params", type=int, default=20_000, help="target trainable parameter count (hit within +-5%%)")
    parser.add_argument("--depth", type=int, default=1, help="hidden layers, all of the width that meets the budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one training run per seed, in one process")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop after the epoch that crosses this training time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help="Adam learning rate")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--onnx-out", type=Path, default=None, help="export the trained model here with torch.onnx.export")
    args = parser.parse_args(argv)
    if len(args.splits) not in (1, len(args.seeds)):
        parser.error(f"expected one split or one per seed ({len(args.seeds)}), got {len(args.splits)}")
    return RunConfig(
        tuple(args.splits), args.params, args.depth, tuple(args.seeds), args.max_epochs, args.max_seconds, args.batch_size, args.lr, args.threads, args.onnx_out
    )


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def layer_widths(n_features: int, width: int, depth: int, n_outputs: int) -> list[int]:
    return [n_features, *[width] * depth, n_outputs]


def width_for_budget(build: ModelBuilder, n_features: int, n_outputs: int, target: int, depth: int = 1) -> int:
    """The hidden width whose parameter count is closest to ``target`` (counts grow with width); must land within +-5%."""
    def count(width: int) -> int:
        return trainable_parameters(build(layer_widths(n_features, width, depth, n_outputs), 0))

    low, high = 1, 1
    while count(high) < target:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < target else (low, middle)
    width = min((low, high), key=lambda w: abs(count(w) - target))
    if abs(count(width) - target) > PARAMETER_TOLERANCE * target:
        raise LutnetError("no width hits the parameter budget", expected=f"{target} +-5%", got=f"{count(width)} at width {width}")
    return width


class ScaledModel(nn.Module):
    """The peer's network between the input scaling fitted on the training split and, for regression, target de-scaling.

    Inputs are mapped to [-1, 1] per feature (the grid range KAN libraries default to), so the exported graph,
    like lutnet's, takes raw features.
    """

    def __init__(self, network: nn.Module, split: SplitArrays) -> None:
        super().__init__()
        self.network = network
        low, high = split.X_train.min(axis=0), split.X_train.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        self.register_buffer("x_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("x_scale", torch.as_tensor(2.0 / span, dtype=torch.float32))
        regression = split.task == "regression"
        self.register_buffer("y_mean", torch.tensor(float(split.y_train.mean()) if regression else 0.0))
        self.register_buffer("y_std", torch.tensor(float(split.y_train.std() or 1.0) if regression else 1.0))

    def network_output(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output before de-scaling: logits, or the standardized regression target."""
        return self.network((x - self.x_low) * self.x_scale - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network_output(x) * self.y_std + self.y_mean


@dataclass(frozen=True)
class TrainingReport:
    epochs: int
    best_epoch: int
    seconds_per_epoch: float
    train_seconds: float


def loss_function(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if task == "classification":
        return nn.functional.cross_entropy
    return lambda output, target: nn.functional.mse_loss(output.squeeze(-1), target)


def train(model: ScaledModel, split: SplitArrays, config: RunConfig, seed: int) -> TrainingReport:
    """Adam on mini-batches; keeps the weights of the epoch with the best validation score (never looks at test)."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.as_tensor(split.X_train)
    y = torch.as_tensor(split.y_train)
    if split.task == "regression":
        y = (y - model.y_mean) / model.y_std  # the loss sees unit-scale targets; ScaledModel undoes it on output
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    criterion = loss_function(split.task)
    epoch_seconds: list[float] = []
    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        started = time.perf_counter()
        for batch in torch.randperm(len(X), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            criterion(model.network_output(X[batch]), y[batch]).backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - started)
        score = validation_score(model, split)
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
        if sum(epoch_seconds) >= config.max_seconds:
            break
    model.load_state_dict(best_state)
    return TrainingReport(len(epoch_seconds), best_epoch, statistics.median(epoch_seconds), sum(epoch_seconds))


def predict(model: nn.Module, X: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(X)).numpy()


def validation_score(model: ScaledModel, split: SplitArrays) -> float:
    """Higher is better: accuracy, or minus the RMSE."""
    metrics = score(predict(model, split.X_val), split.y_val, split.task)
    return metrics["accuracy"] if split.task == "classification" else -metrics["rmse"]


def score(output: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    """Accuracy for classification; RMSE and R^2 in the target's own units, and RMSE over the target's std, for regression."""
    if task == "classification":
        return {"accuracy": float((output.argmax(axis=1) == y).mean())}
    residual = output.reshape(-1) - y
    rmse = float(np.sqrt(np.mean(residual**2)))
    return {"rmse": rmse, "relative_rmse": rmse / float(y.std()), "r2": float(1.0 - np.sum(residual**2) / np.sum((y - y.mean()) ** 2))}


def export_onnx(model: nn.Module, split: SplitArrays, path: Path) -> dict[str, object]:
    """torch.onnx.export (dynamo first, the TorchScript exporter as fallback) with a dynamic batch; checks ORT against torch."""
    import onnx
    import onnxruntime

    model.eval()
    example = torch.as_tensor(split.X_test[:4])
    failures: dict[str, str] = {}
    exporters = {
        "dynamo": {"dynamo": True, "dynamic_shapes": ({0: torch.export.Dim.DYNAMIC},)},
        "torchscript": {"dynamo": False, "dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}}},
    }
    for exporter, options in exporters.items():
        try:
            torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["output"], **options)
            break
        except Exception as error:  # any exporter failure is a result to report, not a crash
            failures[exporter] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    else:
        return {"exported": False, "failures": failures}
    graph = onnx.load(str(path)).graph
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_output = session.run(None, {session.get_inputs()[0].name: split.X_test})[0]
    return {
        "exported": True,
        "exporter": exporter,
        "failures": failures,
        "path": str(path),
        "nodes": len(graph.node),
        "op_types": dict(Counter(node.op_type for node in graph.node).most_common()),
        "max_abs_diff_vs_torch": float(np.abs(onnx_output - predict(model, split.X_test)).max()),
    }


def versions(packages: Sequence[str]) -> dict[str, str]:
    return {name: metadata.version(name) for name in ("torch", "numpy", "onnx", "onnxruntime", *packages)}


def run_peer(peer: str, build: ModelBuilder, packages: Sequence[str], argv: Sequence[str] | None = None) -> int:
    """Size, train (once per seed), score and export one peer model; print the result as JSON. Returns the exit status."""
    config = parse_config(argv, f"Train the {peer} peer on a .npz split and report JSON.")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # libraries and the exporter print progress; stdout carries only the JSON
            result = run(peer, build, packages, config)
    except LutnetError as error:
        print(f"run_{peer}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def run(peer: str, build: ModelBuilder, packages: Sequence[str], config: RunConfig) -> dict[str, object]:
    """Every seed in one process (the libraries take seconds to import); the first seed's model is the one exported."""
    torch.set_num_threads(config.threads)
    splits = [read_npz(path) for path in config.splits]
    splits *= len(config.seeds) // len(splits)
    split = splits[0]
    widths = layer_widths(split.n_features, width_for_budget(build, split.n_features, split.n_outputs, config.target_params, config.depth),
                          config.depth, split.n_outputs)
    models, runs = [], []
    for seed, split in zip(config.seeds, splits, strict=True):
        torch.manual_seed(seed)
        model = ScaledModel(build(widths, seed), split)
        report = train(model, split, config, seed)
        models.append(model)
        runs.append({
            "seed": seed,
            **asdict(report),
            "val": score(predict(model, split.X_val), split.y_val, split.task),
            "test": score(predict(model, split.X_test), split.y_test, split.task),
        })
    result: dict[str, object] = {
        "peer": peer,
        "dataset": split.name,
        "task": split.task,
        "layers": widths,
        "params": trainable_parameters(models[0]),
        "target_params": config.target_params,
        "runs": runs,
        "config": {**asdict(config), "splits": [str(path) for path in config.splits], "onnx_out": str(config.onnx_out) if config.onnx_out else None},
        "versions": versions(packages),
    }
    if config.onnx_out is not None:
        result["onnx"] = export_onnx(models[0], splits[0], config.onnx_out)
    return result
