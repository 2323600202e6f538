"""``lutnet plot`` and ``plot_activations``: every learned activation of a checkpoint or of any module, as small multiples.

Curves come from the numpy reference (``lutnet.lut.lut_forward``), so the picture shows exactly the
function the tables mean, including the extrapolation past each channel's range (shaded), with the
function each table started as dashed.
"""
from __future__ import annotations

import argparse
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lutnet.atomic import write_bytes_atomic
from lutnet.checkpoint import Checkpoint, read_checkpoint
from lutnet.errors import LutnetError
from lutnet.lut import activation_function, lut_forward, table_movement

if TYPE_CHECKING:
    from torch import nn

POINTS = 400
MARGIN = 0.25  # how far past the range to draw, as a fraction of the range width
PANEL_INCHES = 1.15


def channels_to_show(rows: int, cap: int) -> np.ndarray:
    """All rows, or ``cap`` of them evenly spread (first and last included)."""
    return np.arange(rows) if rows <= cap else np.unique(np.linspace(0, rows - 1, cap).round().astype(int))


@dataclass(frozen=True)
class PlottedLayer:
    """One LUT layer as the plot needs it: its name, knots ``[R, K+1]``, range and settings (float64), and optionally
    a panel title per row (say, which input drives the channel) instead of the row number."""

    name: str
    table: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    mode: str
    extrapolate: str
    init: str
    labels: tuple[str, ...] | None = None


def checkpoint_layers(checkpoint: Checkpoint) -> list[PlottedLayer]:
    """The LUT layers of a checkpoint, named ``layer i``."""
    lut = checkpoint.spec.lut
    tensors = lambda i: (np.asarray(checkpoint.tensors[f"act.{i}.{k}"], dtype=np.float64) for k in ("table", "lo", "hi"))  # noqa: E731
    return [PlottedLayer(f"layer {i}", *tensors(i), lut.mode, lut.extrapolate, lut.init) for i in range(len(checkpoint.spec.hidden))]


def module_layers(model: nn.Module) -> list[PlottedLayer]:
    """The LUT layers of any module, named by their qualified names."""
    from lutnet.training.convert import named_lut_layers

    as_numpy = lambda t: t.detach().double().cpu().numpy()  # noqa: E731
    return [PlottedLayer(name, as_numpy(layer.table), as_numpy(layer.lo), as_numpy(layer.hi), layer.mode, layer.extrapolate, layer.init)
            for name, layer in named_lut_layers(model)]


def activation_curves(layer: PlottedLayer, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, learned outputs and init-function outputs of one table row, over its range plus margins."""
    lo, hi = layer.lo[row : row + 1], layer.hi[row : row + 1]
    width = hi[0] - lo[0]
    x = np.linspace(lo[0] - MARGIN * width, hi[0] + MARGIN * width, POINTS)
    learned = lut_forward(x[:, None], layer.table[row : row + 1], lo, hi, layer.mode, layer.extrapolate)[:, 0]
    return x, learned, activation_function(layer.init)(x)


def render(layers: list[PlottedLayer], max_channels: int, title: str) -> bytes:
    """The PNG bytes of the grid: one block of small multiples per LUT layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown_rows = [channels_to_show(layer.table.shape[0], max_channels) for layer in layers]
    columns = max(min(8, len(rows)) for rows in shown_rows)
    heights = [math.ceil(len(rows) / columns) for rows in shown_rows]
    figure = plt.figure(figsize=(columns * PANEL_INCHES + 0.4, sum(heights) * PANEL_INCHES + 0.7 * len(layers) + 0.6), layout="constrained")
    figure.suptitle(title, fontsize=10)
    blocks = figure.subfigures(len(layers), 1, height_ratios=[h + 0.6 for h in heights], squeeze=False)[:, 0]
    for layer, block, rows, height in zip(layers, blocks, shown_rows, heights, strict=True):
        total = layer.table.shape[0]
        shown = "shared table" if total == 1 else f"{total} channels" + (f", showing {len(rows)}" if len(rows) < total else "")
        moved = table_movement(layer.table, layer.lo, layer.hi, layer.init)
        block.suptitle(f"{layer.name}: {shown}; moved {moved:.3f} from init (relative L2)", fontsize=9, x=0.02, ha="left")
        axes = block.subplots(height, columns, squeeze=False)
        for ax in axes.flat[len(rows):]:
            ax.set_axis_off()
        for ax, row in zip(axes.flat, rows, strict=False):
            draw_panel(ax, layer, int(row), total)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def draw_panel(ax: object, layer: PlottedLayer, row: int, total: int) -> None:
    x, learned, initial = activation_curves(layer, row)
    ax.axvspan(x[0], layer.lo[row], color="0.92", lw=0)  # outside the table's range: extrapolated
    ax.axvspan(layer.hi[row], x[-1], color="0.92", lw=0)
    ax.plot(x, initial, "--", color="0.55", lw=0.8)
    ax.plot(x, learned, color="C0", lw=1.1)
    ax.set_xlim(x[0], x[-1])
    ax.tick_params(labelsize=5, length=2, pad=1)
    if total > 1:
        ax.set_title(panel_title(layer, row), fontsize=6, pad=2)


def panel_title(layer: PlottedLayer, row: int) -> str:
    return layer.labels[row] if layer.labels is not None else f"c{row}"


def plot_activations(model: nn.Module, path: str | os.PathLike[str], *, max_channels: int = 64, title: str | None = None) -> Path:
    """Draw every learned activation of ``model`` (any module with LUT layers) into the PNG ``path``; returns the path."""
    layers = module_layers(model)
    if not layers:
        raise LutnetError(f"activations of {type(model).__name__}", expected="at least one LUTActivation layer", got="none")
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise LutnetError("plot path", expected="a .png file name", got=str(out))
    heading = title or f"{type(model).__name__}  (solid: learned, dashed: init, shaded: outside the range)"
    write_bytes_atomic(out, render(layers, max_channels, heading))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lutnet plot", description="Draw every learned activation of a checkpoint (its init function dashed).")
    parser.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="a directory written by 'lutnet train'")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="where to write the PNG")
    parser.add_argument("--max-channels", type=int, default=64, metavar="N",
                        help="at most N panels per layer, evenly spread over the channels (default: 64)")
    args = parser.parse_args(argv)
    if args.max_channels < 1:
        parser.error(f"argument --max-channels: expected an integer >= 1, got {args.max_channels}")
    if not args.out.lower().endswith(".png"):
        parser.error(f"argument --out: expected a .png file name, got {args.out!r}")
    checkpoint = read_checkpoint(args.checkpoint)
    spec = checkpoint.spec
    if spec.activation != "lut":
        raise LutnetError(f"activations of {args.checkpoint}", expected="lut (learned tables)", got=f"{spec.activation}, which has nothing learned to plot")
    lut = spec.lut
    title = (f"{Path(args.checkpoint).name}: {spec.family} {list(spec.hidden)}, {lut.bins} bins, {lut.mode}, extrapolate {lut.extrapolate}"
             f"  (solid: learned, dashed: init {lut.init}, shaded: outside the range)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, render(checkpoint_layers(checkpoint), args.max_channels, title))
    print(f"wrote {out}")
    return 0
