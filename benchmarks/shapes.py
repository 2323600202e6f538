"""Suite 5: what the LUT activations learned, measured: distance from the init, where the curves bend, how many stayed ReLU-like.

Run ``python -m benchmarks.shapes [--quick]``; writes ``benchmarks/results/shapes.json`` and one PNG per model under
``benchmarks/results/`` (learned curves over their init; plus ``lutnet plot``'s figure where that command is installed).
Trains the ``lutnet train`` default LUT-MLP on digits and MNIST-5k (seed 0). About 5 minutes on 2 cores
(``--quick``: digits only, ~2 minutes).

Per layer and channel, with knots ``x_k = lo + k h`` and the table ``T`` against its init ``T0 = f(x_k)``:
distance = ``|T - T0| / (hi - lo)`` (mean over knots, and max), the bend = the knot of the largest
``|T[k+1] - 2T[k] + T[k-1]|``, ReLU-like = max distance below ``RELU_LIKE`` of the range, non-monotone = the
table both rises and falls by more than ``MONOTONE_TOLERANCE`` of the range.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS_DIR, record
from lutnet.checkpoint import Checkpoint, read_checkpoint
from lutnet.lut import init_table, knot_positions
from lutnet.training.trainer import TrainConfig, train

WORK = Path(__file__).resolve().parent / ".work" / "shapes"
DATASETS = ("digits", "mnist5k")
RELU_LIKE = 0.05
MONOTONE_TOLERANCE = 0.01
CURVES_PER_LAYER = 12


def train_default(dataset: str) -> Path:
    """The default ``lutnet train`` LUT-MLP of ``dataset`` (seed 0) in a fresh folder."""
    out = WORK / dataset
    shutil.rmtree(out, ignore_errors=True)
    train(TrainConfig(out=str(out), dataset=dataset, quiet=True))
    return out


def layer_tables(checkpoint: Checkpoint) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(table ``[R, K+1]``, lo ``[R]``, hi ``[R]``) of each LUT layer (R = channels, or 1 for a shared table)."""
    spec = checkpoint.spec
    return [tuple(np.asarray(checkpoint.tensors[f"act.{i}.{name}"], dtype=np.float64) for name in ("table", "lo", "hi"))
            for i in range(len(spec.hidden))]


def layer_measures(table: np.ndarray, lo: np.ndarray, hi: np.ndarray, init: str) -> dict[str, Any]:
    """The per-layer numbers of the module docstring, over the layer's channels."""
    bins = table.shape[1] - 1
    width = (hi - lo)[:, None]  # (C, 1)
    distance = np.abs(table - init_table(init, lo, hi, bins)) / width  # (C, K+1)
    second = np.abs(table[:, 2:] - 2.0 * table[:, 1:-1] + table[:, :-2])  # (C, K-1)
    bend = knot_positions(lo, hi, bins)[np.arange(len(table)), 1 + second.argmax(axis=1)]  # (C,) pre-activation of the sharpest bend
    steps = np.diff(table, axis=1) / width
    non_monotone = (steps.max(axis=1) > MONOTONE_TOLERANCE) & (steps.min(axis=1) < -MONOTONE_TOLERANCE)
    return {
        "channels": int(len(table)),
        "bins": bins,
        "distance_mean": float(distance.mean()),
        "distance_max": float(distance.max()),
        "channel_max_distance_median": float(np.median(distance.max(axis=1))),
        "relu_like_fraction": float((distance.max(axis=1) < RELU_LIKE).mean()),
        "non_monotone_fraction": float(non_monotone.mean()),
        "bend_median": float(np.median(bend)),
        "bend_iqr": [float(q) for q in np.percentile(bend, [25, 75])],
        "bend_at_zero_fraction": float((np.abs(bend) <= (hi - lo) / bins).mean()),
        "range_median": [float(np.median(lo)), float(np.median(hi))],
    }


def reading(dataset: str, layers: list[dict[str, Any]], best_epoch: int | None = None, epochs: int | None = None) -> str:
    """A plain-words summary generated from the measured numbers (none typed by hand)."""
    sentences = [] if best_epoch is None else [f"The checkpoint holds the best-validation epoch, {best_epoch} of {epochs} run."]
    for index, layer in enumerate(layers):
        sentences.append(
            f"Layer {index}: the tables moved on average {100 * layer['distance_mean']:.1f}% of their input range from the ReLU init "
            f"(largest single knot {100 * layer['distance_max']:.0f}%); {100 * layer['relu_like_fraction']:.0f}% of the "
            f"{layer['channels']} channels stayed within {100 * RELU_LIKE:.0f}% of ReLU everywhere, "
            f"{100 * layer['non_monotone_fraction']:.0f}% became non-monotone (a pocket), and "
            f"{100 * layer['bend_at_zero_fraction']:.0f}% still bend hardest at the ReLU kink (within one bin of 0); "
            f"across channels the sharpest bend sits at pre-activations {layer['bend_iqr'][0]:+.2f} .. {layer['bend_iqr'][1]:+.2f} (IQR).")
    return f"{dataset}: " + " ".join(sentences)


def plot_curves(checkpoint: Checkpoint, path: Path) -> None:
    """Learned curves (solid) over their init (dashed) for the first channels of each layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = layer_tables(checkpoint)
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.6), squeeze=False)
    for index, (ax, (table, lo, hi)) in enumerate(zip(axes[0], layers, strict=True)):
        knots = knot_positions(lo, hi, table.shape[1] - 1)
        initial = init_table(checkpoint.spec.lut.init, lo, hi, table.shape[1] - 1)
        for c in range(min(CURVES_PER_LAYER, len(table))):
            line, = ax.plot(knots[c], table[c], lw=1.2)
            ax.plot(knots[c], initial[c], ls="--", lw=0.7, color=line.get_color())
        ax.set(title=f"layer {index}: first {min(CURVES_PER_LAYER, len(table))} of {len(table)} channels", xlabel="pre-activation", ylabel="activation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lutnet_plot(checkpoint_dir: Path, path: Path) -> str | None:
    """``lutnet plot`` of the checkpoint into ``path``, where the command is installed; returns the file name written."""
    if importlib.util.find_spec("lutnet.training.plot") is None:
        return None
    from lutnet.cli import main as lutnet_main

    status = lutnet_main(["plot", str(checkpoint_dir), "--out", str(path)])
    return path.name if status == 0 and path.is_file() else None


def measure(datasets: Sequence[str]) -> dict[str, Any]:
    models = []
    for dataset in datasets:
        out = train_default(dataset)
        checkpoint = read_checkpoint(out)
        layers = [{"layer": i, **layer_measures(*tables, checkpoint.spec.lut.init)} for i, tables in enumerate(layer_tables(checkpoint))]
        plot = RESULTS_DIR / f"shapes_{dataset}.png"
        plot_curves(checkpoint, plot)
        training = checkpoint.info["training"]
        spec, best, ran = checkpoint.spec, training["best_epoch"], training["epochs_run"]
        models.append({
            "dataset": dataset, "best_epoch": best, "epochs_run": ran, "hidden": list(spec.hidden), "bins": spec.lut.bins, "init": spec.lut.init,
            "test_accuracy": checkpoint.info["metrics"]["test"]["accuracy"], "layers": layers, "reading": reading(dataset, layers, best, ran),
            "plot": f"results/{plot.name}", "lutnet_plot": lutnet_plot(out, RESULTS_DIR / f"lutnet_plot_{dataset}.png"),
        })
    method = __doc__.split("\n\n", 2)[2].replace("\n", " ").strip()
    return {"method": method.replace("``RELU_LIKE``", f"{RELU_LIKE}").replace("``MONOTONE_TOLERANCE``", f"{MONOTONE_TOLERANCE}"),
            "models": models}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shapes", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only")
    args = parser.parse_args(argv)
    return record("benchmarks.shapes", "shapes", lambda: measure(("digits",) if args.quick else DATASETS))


if __name__ == "__main__":
    raise SystemExit(main())
