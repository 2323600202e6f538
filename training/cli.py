"""``lutnet train``: command-line flags to a :class:`lutnet.training.trainer.TrainConfig`, then one training run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from collections.abc import Callable, Sequence

from lutnet.lut import EXTRAPOLATIONS, INIT_FUNCTIONS, MODES
from lutnet.spec import ACTIVATIONS, FAMILIES, POOLINGS
from lutnet.training import native
from lutnet.training.data import BUNDLED
from lutnet.training.trainer import SELECTIONS, TABLE_SCHEDULES, TrainConfig, read_resume_state, train

DEFAULTS = TrainConfig()


def _numbers(kind: Callable[[str], float], count: int | None, minimum: float, what: str) -> Callable[[str], tuple]:
    """An argparse type for comma-separated numbers (``count`` of them, or any), each >= ``minimum``."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (count is not None and len(values) != count) or any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values
    return parse


def _number(kind: Callable[[str], float], minimum: float, what: str) -> Callable[[str], float]:
    parse = _numbers(kind, 1, minimum, what)
    return lambda text: parse(text)[0]


def _range(text: str) -> tuple[float, float]:
    lo, hi = _numbers(float, 2, float("-inf"), "LO,HI with LO < HI, like -4,4")(text)
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"expected LO,HI with LO < HI, like -4,4, got {text!r}")
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    """The ``lutnet train`` flags; every default lives in :class:`TrainConfig` (shown in --help)."""
    p = argparse.ArgumentParser(prog="lutnet train", description="Train a model with learned lookup-table activations (or a relu/gelu baseline).",
                                argument_default=argparse.SUPPRESS)
    d = DEFAULTS
    add = lambda flag, help, **kw: p.add_argument(flag, help=f"{help} (default: {kw.pop('shown', None) or getattr(d, flag[2:].replace('-', '_'))})", **kw)  # noqa: E731
    add("--out", "directory for the checkpoint, metrics.jsonl and the resumable state", metavar="DIR", shown="required unless --resume")
    add("--resume", "continue the interrupted run in DIR (its settings are reused; given flags must match)", metavar="DIR", shown="off")
    add("--dataset", f"one of {', '.join(BUNDLED)}, or a path to a CSV file")
    add("--target", "CSV column to predict", shown="the last column")
    add("--model", "model family", choices=FAMILIES)
    add("--hidden", "comma-separated widths (mlp) or channels (convnet) of the hidden layers",
        type=_numbers(int, None, 1, "comma-separated positive integers, like 256,256"), shown="256,256")
    add("--activation", "activation of every hidden layer", choices=ACTIVATIONS)
    add("--bins", "K: intervals per table (K+1 knots)", type=_number(int, 2, "an integer >= 2"))
    add("--mode", "table lookup", choices=MODES)
    add("--extrapolate", "outside the calibrated range", choices=EXTRAPOLATIONS)
    add("--init", "function the tables start as", choices=INIT_FUNCTIONS)
    add("--shared", "one table shared by all channels of a layer", action="store_true")
    add("--range", "initial table range LO,HI (calibration then fits each channel)", type=_range, shown="-4,4")
    add("--kernel-size", "convnet kernel size (odd)", type=_number(int, 1, "an odd integer >= 1"))
    add("--pool", "convnet 2x2 pooling", choices=POOLINGS)
    add("--epochs", "maximum epochs", type=_number(int, 1, "an integer >= 1"))
    add("--batch-size", "global batch size (split across torchrun processes)", type=_number(int, 1, "an integer >= 1"))
    add("--lr", "learning rate of weights and biases", type=_number(float, 1e-12, "a positive number"))
    add("--weight-decay", "AdamW weight decay of weights and biases", type=_number(float, 0.0, "a number >= 0"))
    add("--table-lr", "learning rate of the tables", type=_number(float, 1e-12, "a positive number"))
    add("--table-weight-decay", "AdamW weight decay of the tables", type=_number(float, 0.0, "a number >= 0"))
    add("--table-schedule", "the tables' learning-rate schedule: 'cosine' decays it with the weights', 'constant' keeps it",
        choices=TABLE_SCHEDULES)
    add("--smoothness", "weight of the TV(2) smoothness penalty on the tables", type=_number(float, 0.0, "a number >= 0"))
    add("--calibration-size", "training rows used to calibrate table ranges", type=_number(int, 1, "an integer >= 1"))
    add("--percentiles", "LOW,HIGH percentiles of the pre-activations that become each table's range",
        type=_numbers(float, 2, 0.0, "two percentiles LOW,HIGH in [0, 100], like 1,99"), shown="1,99")
    add("--recalibrate-after", "calibrate again after this many epochs (0: never)", type=_number(int, 0, "an integer >= 0"))
    add("--patience", "stop after this many epochs without a better validation score", type=_number(int, 1, "an integer >= 1"))
    add("--select", "which epoch's weights to keep: 'metric' (validation accuracy, or RMSE for regression, loss breaking ties) "
        "or 'loss' (validation loss)", choices=SELECTIONS)
    add("--std-floor", "raise each input feature's std to at least this fraction of its training range (max - min), so no training "
        "input standardizes beyond 1/FLOOR (0.5: min-max scaling to a span of 2; 0: plain standardization)", type=_number(float, 0.0, "a number >= 0"))
    add("--seed", "seed of the split, the initialization and the shuffles", type=_number(int, 0, "an integer >= 0"))
    add("--device", "where to train", choices=("auto", "cpu", "cuda"))
    add("--threads", "torch CPU threads (0: torch's default)", type=_number(int, 0, "an integer >= 0"))
    add("--stop-after", "stop after this many epochs of this invocation, leaving a resumable state", type=_number(int, 1, "an integer >= 1"),
        shown="run to the end")
    add("--quiet", "no progress bar and no summary line", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    if "percentiles" in given and not given["percentiles"][0] < given["percentiles"][1] <= 100.0:
        parser.error(f"argument --percentiles: expected LOW < HIGH <= 100, got {given['percentiles']}")
    if "resume" in given:
        if given.get("out", given["resume"]) != given["resume"]:
            parser.error("argument --out: expected the --resume directory or nothing, got another directory")
        given["out"], given["resume"] = given["resume"], True
        given = {**read_resume_state(Path(given["out"]))["config"], **given}  # unspecified flags take the run's settings
    elif "out" not in given:
        parser.error("the following arguments are required: --out (or --resume DIR)")
    config = TrainConfig(**given)
    if config.activation == "lut" and not config.quiet and native.needs_build():
        print("lutnet train: compiling the native LUT operator for this torch version (once; it takes a few seconds)", file=sys.stderr)
    result = train(config)
    if not result.finished:
        print(f"stopped after epoch {result.epochs_run}; continue with: lutnet train --resume {result.out}", file=sys.stderr)
    return 0

