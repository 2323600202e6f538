"""``lutnet plot``: every learned activation of a checkpoint as small multiples, its init function dashed.

Curves come from the numpy reference (``lutnet.lut.lut_forward``), so the picture shows exactly the
function the checkpoint means, including the extrapolation past each channel's range (shaded).
"""
from __future__ import annotations

import argparse
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lutnet.atomic import write_bytes_atomic
from lutnet.checkpoint import Checkpoint, read_checkpoint
from lutnet.errors import LutnetError
from lutnet.lut import activation_function, lut_forward, table_movement

POINTS = 400
MARGIN = 0.25  # how far past the range to draw, as a fraction of the range width
PANEL_INCHES = 1.15


def channels_to_show(rows: int, cap: int) -> np.ndarray:
    """All rows, or ``cap`` of them evenly spread (first and last included)."""
    return np.arange(rows) if rows <= cap else np.unique(np.linspace(0, rows - 1, cap).round().astype(int))


def activation_curves(checkpoint: Checkpoint, layer: int, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, learned outputs and init-function outputs of one table row, over its range plus margins."""
    lut = checkpoint.spec.lut
    table, lo, hi = (np.asarray(checkpoint.tensors[f"act.{layer}.{k}"], dtype=np.float64) for k in ("table", "lo", "hi"))
    width = hi[row] - lo[row]
    x = np.linspace(lo[row] - MARGIN * width, hi[row] + MARGIN * width, POINTS)
    learned = lut_forward(x[:, None], table[row : row + 1], lo[row : row + 1], hi[row : row + 1], lut.mode, lut.extrapolate)[:, 0]
    return x, learned, activation_function(lut.init)(x)


def render(checkpoint: Checkpoint, max_channels: int, title: str) -> bytes:
    """The PNG bytes of the grid: one block of small multiples per LUT layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = checkpoint.spec
    layers = [channels_to_show(checkpoint.tensors[f"act.{i}.table"].shape[0], max_channels) for i in range(len(spec.hidden))]
    columns = max(min(8, len(rows)) for rows in layers)
    heights = [math.ceil(len(rows) / columns) for rows in layers]
    figure = plt.figure(figsize=(columns * PANEL_INCHES + 0.4, sum(heights) * PANEL_INCHES + 0.7 * len(layers) + 0.6), layout="constrained")
    figure.suptitle(title, fontsize=10)
    blocks = figure.subfigures(len(layers), 1, height_ratios=[h + 0.6 for h in heights], squeeze=False)[:, 0]
    for i, (block, rows) in enumerate(zip(blocks, layers, strict=True)):
        total = checkpoint.tensors[f"act.{i}.table"].shape[0]
        shown = "shared table" if total == 1 else f"{total} channels" + (f", showing {len(rows)}" if len(rows) < total else "")
        moved = table_movement(*(checkpoint.tensors[f"act.{i}.{k}"] for k in ("table", "lo", "hi")), spec.lut.init)
        block.suptitle(f"layer {i}: {shown}; moved {moved:.3f} from init (relative L2)", fontsize=9, x=0.02, ha="left")
        axes = block.subplots(heights[i], columns, squeeze=False)
        for ax in axes.flat[len(rows):]:
            ax.set_axis_off()
        for ax, row in zip(axes.flat, rows, strict=False):
            draw_panel(ax, checkpoint, i, int(row), total)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def draw_panel(ax: object, checkpoint: Checkpoint, layer: int, row: int, total: int) -> None:
    x, learned, initial = activation_curves(checkpoint, layer, row)
    lo, hi = (float(checkpoint.tensors[f"act.{layer}.{k}"][row]) for k in ("lo", "hi"))
    ax.axvspan(x[0], lo, color="0.92", lw=0)  # outside the table's range: extrapolated
    ax.axvspan(hi, x[-1], color="0.92", lw=0)
    ax.plot(x, initial, "--", color="0.55", lw=0.8)
    ax.plot(x, learned, color="C0", lw=1.1)
    ax.set_xlim(x[0], x[-1])
    ax.tick_params(labelsize=5, length=2, pad=1)
    if total > 1:
        ax.set_title(f"c{row}", fontsize=6, pad=2)


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
    write_bytes_atomic(out, render(checkpoint, args.max_channels, title))
    print(f"wrote {out}")
    return 0
