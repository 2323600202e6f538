"""What the four examples share: a plain training loop over any module with LUT layers, and the script's command line."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lutnet.errors import LutnetError
from lutnet.export import export_module
from lutnet.training import calibrate, lut_parameters, other_parameters, smoothness

SMOOTHNESS = 1e-4
NEAREST_MAX_ERROR = 1e-2  # the nearest export's default bound: 1e-3 can need more than the 4096 bins export allows


@dataclass(frozen=True)
class Example:
    """One example: how to build its model and data, and what it predicts."""

    name: str
    build: Callable[[], nn.Module]
    data: Callable[[int, int], tuple[tuple[torch.Tensor, ...], torch.Tensor]]  # (rows, seed) -> (inputs, targets)
    task: str
    labels: tuple[str, ...] = ()
    input_names: tuple[str, ...] | None = None


def train(model: nn.Module, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor, task: str, steps: int, batch_size: int = 64,
          seed: int = 0) -> nn.Module:
    """AdamW with the tables in their own group and the TV(2) penalty; LUT ranges calibrated first and again halfway.

    The second calibration follows the pre-activations that training moved, so the tables cover where the data is.
    """
    generator = torch.Generator().manual_seed(seed)
    calibration = tuple(x[:256] for x in inputs)
    calibrate(model, calibration)
    optimizer = torch.optim.AdamW([{"params": other_parameters(model), "lr": 3e-3},
                                   {"params": lut_parameters(model), "lr": 1e-3, "weight_decay": 0.0}])
    for step in range(steps):
        if step == steps // 2:
            calibrate(model.eval(), calibration)
        model.train()
        rows = torch.randint(len(targets), (batch_size,), generator=generator)
        outputs = model(*(x[rows] for x in inputs))
        loss = F.cross_entropy(outputs, targets[rows]) if task == "classification" else F.mse_loss(outputs, targets[rows])
        optimizer.zero_grad()
        (loss + SMOOTHNESS * smoothness(model)).backward()
        optimizer.step()
    return model.eval()


def main(example: Example, argv: Sequence[str] | None = None) -> int:
    """Train ``example`` on its data and export it (linear, and nearest within ``--max-error``) to a model repository.

    The nearest export goes first: its bound is the one that can fail, and then nothing is written.
    """
    parser = argparse.ArgumentParser(description=f"Train the {example.name} example and export it with lutnet.export.export_module.")
    parser.add_argument("--rows", type=int, default=2000, help="training rows (default 2000)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    parser.add_argument("--repository", default="models", help="model repository to export into (default ./models)")
    parser.add_argument("--max-error", type=float, default=NEAREST_MAX_ERROR,
                        help=f"bound of the nearest export's deviation, relative to the output scale (default {NEAREST_MAX_ERROR:g})")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    inputs, targets = example.data(args.rows, 0)
    model = train(example.build(), inputs, targets, example.task, args.steps)
    options = {"task": example.task, "labels": example.labels, "input_names": example.input_names, "repository": args.repository}
    examples = tuple(x[:256] for x in inputs)
    try:
        export_module(model, examples, name=f"{example.name}-nearest", mode="nearest", max_error=args.max_error, **options)
        export_module(model, examples, name=example.name, **options)
    except LutnetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {example.name} and {example.name}-nearest into {args.repository}; serve them with: lutnet serve --repository {args.repository}")
    return 0
