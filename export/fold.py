"""The merge, in pure numpy: fold standardization and table coordinates into the weights, lay tables out as segments.

Every LUT layer becomes a *segment table* on a grid of unit-width segments in a coordinate ``v`` that
the preceding Linear/Conv computes directly (its rows are scaled by ``scale / h_c`` and its bias
shifted), so the graph needs no per-channel arithmetic before the lookup::

    s = int(clip(v, 0, S - 1))          # Clip + Cast: truncation is floor because the value is >= 0
    y = intercept[s, c] + v * slope[s, c]

Each segment is the straight line the activation follows there, written in ``v``. Extrapolation is an
extra segment at each end whose index the clip keeps while ``v`` itself stays unclamped: a line with
the edge slope (``linear``) or a constant (``clamp``), exactly as in ``lutnet.lut.lookup``. Under
``clamp`` the edge lines are flat, so the clipped ``v`` gives the same values (and a finite one for an
infinite ``v``): the graph multiplies by it and lets the clip overwrite ``v`` in place.

| mode, extrapolation | ``v`` | segments ``S`` | segment ``s`` covers (in ``u = (z - lo) / h``) |
|---|---|---|---|
| linear, any         | ``u + 1``       | ``K + 2``  | ``[s - 1, s)``; ``s = 0`` below the range, ``s = K + 1`` above |
| nearest, clamp      | ``u + 1/2``     | ``K + 1``  | the pocket around knot ``s``; slopes are all zero and dropped |
| nearest, linear     | ``2u + 2``      | ``2K + 4`` | half pockets ``[(s - 2) / 2, (s - 1) / 2)``; the two at each end are the edge lines |
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from lutnet.checkpoint import Checkpoint
from lutnet.lut import resample_table

# (scale, offset) of v = scale * u + offset, per (mode, extrapolation); see the module docstring.
GRIDS = {
    ("linear", "clamp"): (1.0, 1.0),
    ("linear", "linear"): (1.0, 1.0),
    ("nearest", "clamp"): (1.0, 0.5),
    ("nearest", "linear"): (2.0, 2.0),
}


@dataclass(frozen=True)
class SegmentTable:
    """One activation layer as straight-line segments: ``y = intercept[s, c] + v * slope[s, c]``."""

    intercept: np.ndarray  # (S, C)
    slope: np.ndarray | None  # (S, C); None when every segment is constant
    flat_edges: bool = False  # the first and last segments are constant: y may use v clipped to [0, S - 1]

    @property
    def segments(self) -> int:
        return self.intercept.shape[0]


@dataclass(frozen=True)
class FusedLayer:
    """A Linear (``[out, in]``) or Conv (``[out, in, k, k]``) layer whose output is the activation's input coordinate."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str  # "lut" | "relu" | "gelu"
    table: SegmentTable | None = None


@dataclass(frozen=True)
class FusedModel:
    """Everything the graph builder needs, in float64: the separated model with every affine map merged."""

    family: str
    input_shape: tuple[int, ...]
    num_outputs: int
    pool: str
    layers: tuple[FusedLayer, ...]
    head_weight: np.ndarray  # (num_outputs, head_in), regression de-standardization included
    head_bias: np.ndarray
    input_shift: np.ndarray | None = None  # per-feature (channel) mean subtracted before the first layer (see fold)


def exported_checkpoint(checkpoint: Checkpoint, mode: str | None = None, bins: int | None = None) -> Checkpoint:
    """The separated model that the export represents: tables resampled to ``bins`` knots, evaluated in ``mode``.

    With the trained mode and bins this is the checkpoint itself.
    """
    spec = checkpoint.spec
    mode = mode or spec.lut.mode
    bins = bins or spec.lut.bins
    if spec.activation != "lut" or (mode, bins) == (spec.lut.mode, spec.lut.bins):
        return checkpoint
    tensors = dict(checkpoint.tensors)
    for i in range(len(spec.hidden)):
        table, lo, hi = (np.asarray(checkpoint.tensors[f"act.{i}.{k}"], dtype=np.float64) for k in ("table", "lo", "hi"))
        tensors[f"act.{i}.table"] = resample_table(table, lo, hi, lo, hi, bins, spec.lut.mode, spec.lut.extrapolate)
    lut = dataclasses.replace(spec.lut, mode=mode, bins=bins)
    return dataclasses.replace(checkpoint, spec=dataclasses.replace(spec, lut=lut), tensors=tensors)


def segment_table(table: np.ndarray, mode: str, extrapolate: str) -> SegmentTable:
    """Lay the knots ``table[C, K+1]`` out as the segment table of the grid ``GRIDS[mode, extrapolate]``."""
    table = np.asarray(table, dtype=np.float64)
    bins = table.shape[1] - 1
    step = np.diff(table, axis=1)  # (C, K) rise of each knot interval
    if mode == "nearest" and extrapolate == "clamp":
        return SegmentTable(intercept=table.T.copy(), slope=None)
    if mode == "linear":
        inner = np.arange(1, bins + 1)  # segment s holds knot interval s - 1, whose line in v is T[s-1] + (v - s) * step
        intercept, slope = table[:, :-1] - inner * step, step
        edge = (intercept[:, :1], slope[:, :1], intercept[:, -1:], slope[:, -1:])
        if extrapolate == "clamp":
            zero = np.zeros_like(table[:, :1])
            edge = (table[:, :1], zero, table[:, -1:], zero)
        intercept = np.concatenate([edge[0], intercept, edge[2]], axis=1)
        slope = np.concatenate([edge[1], slope, edge[3]], axis=1)
        return SegmentTable(intercept=intercept.T.copy(), slope=slope.T.copy(), flat_edges=extrapolate == "clamp")
    # nearest with linear extrapolation, on half pockets w = 2u + 2: below, pockets of knots 0..K (two halves each
    # except the outer halves of knots 0 and K, which belong to the edge lines), above.
    below_intercept, below_slope = table[:, :1] - step[:, :1], step[:, :1] / 2
    above_intercept, above_slope = table[:, -1:] - (bins + 1) * step[:, -1:], step[:, -1:] / 2
    pockets = np.repeat(table, 2, axis=1)[:, 1:-1]  # (C, 2K): halves of knot k at 2k+1, 2k+2 (shifted by the edge)
    zeros = np.zeros_like(pockets)
    intercept = np.concatenate([below_intercept, below_intercept, pockets, above_intercept, above_intercept], axis=1)
    slope = np.concatenate([below_slope, below_slope, zeros, above_slope, above_slope], axis=1)
    return SegmentTable(intercept=intercept.T.copy(), slope=slope.T.copy())


def fold(checkpoint: Checkpoint) -> FusedModel:
    """Merge a (validated) checkpoint into a ``FusedModel``; the LUT mode and bins are those of its spec.

    Input standardization: ``1 / std`` folds into the first layer's input columns (channels), while
    ``x - mean`` stays the graph's first op. Folding the mean into the bias would make the first layer sum
    raw features and cancel them in float32 (features 200 standard deviations from zero, like a year: first-layer
    error 3.4e-4 instead of 3.6e-5), and a convnet pads the *standardized* input with zeros, i.e. the raw input
    with its mean, which a folded bias gets wrong on border pixels. The subtraction is one pass over the input.
    """
    spec = checkpoint.spec
    t = {name: np.asarray(value, dtype=np.float64) for name, value in checkpoint.tensors.items()}
    mean, std = checkpoint.input_mean, checkpoint.input_std
    layers = []
    for i in range(len(spec.hidden)):
        weight, bias = t[f"hidden.{i}.weight"], t[f"hidden.{i}.bias"]
        if i == 0:
            weight = weight / std.reshape((1, -1) + (1,) * (weight.ndim - 2))
        if spec.activation != "lut":
            layers.append(FusedLayer(weight, bias, spec.activation))
            continue
        table, lo, hi = (np.broadcast_to(t[f"act.{i}.{k}"], (len(bias),) + t[f"act.{i}.{k}"].shape[1:]) for k in ("table", "lo", "hi"))
        weight, bias = _fold_coordinate(weight, bias, lo, hi, spec.lut.bins, GRIDS[spec.lut.mode, spec.lut.extrapolate])
        layers.append(FusedLayer(weight, bias, "lut", segment_table(table, spec.lut.mode, spec.lut.extrapolate)))
    head_weight, head_bias = t["head.weight"], t["head.bias"]
    if checkpoint.task == "regression":
        head_weight, head_bias = head_weight * checkpoint.target_std, head_bias * checkpoint.target_std + checkpoint.target_mean
    return FusedModel(
        family=spec.family,
        input_shape=tuple(spec.input_shape),
        num_outputs=spec.num_outputs,
        pool=spec.pool,
        layers=tuple(layers),
        head_weight=head_weight,
        head_bias=head_bias,
        input_shift=mean if np.any(mean != 0) else None,
    )


def _fold_coordinate(
    weight: np.ndarray, bias: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int, grid: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``v = scale * (z - lo) / h + offset`` with ``z = weight @ x + bias``."""
    scale, offset = grid
    rows = scale * bins / (hi - lo)  # (C,)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight * rows.reshape(shape), rows * (bias - lo) + offset
