"""The numpy reference of the LUT activation: the single source of truth for what a table means.

A layer with C channels holds a table ``T[C, K+1]``: K+1 knots on a uniform grid over each channel's
range ``[lo_c, hi_c]`` with step ``h_c = (hi_c - lo_c) / K``. For an input ``x`` the table coordinate is
``u = (x - lo_c) / h_c``, so knot ``k`` sits at ``u = k``.

- ``linear`` mode interpolates linearly between knots ``floor(u)`` and ``floor(u) + 1``.
- ``nearest`` mode returns the knot ``floor(u + 0.5)`` (a piecewise-constant "pocket" per knot).
- Outside ``[0, K]``, ``clamp`` holds the edge knot's value and ``linear`` continues the edge
  segment's slope (in both modes), so nothing is ever silently zero.

A table of one row (``T[1, K+1]``, ``lo[1]``, ``hi[1]``) is shared by every channel.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lutnet.errors import LutnetError

MODES = ("linear", "nearest")
EXTRAPOLATIONS = ("clamp", "linear")
INIT_FUNCTIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "identity", "leaky_relu")
LEAKY_RELU_SLOPE = 0.01


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf vectorized is exact to double precision and fast enough for tables.
    from math import erf

    return np.vectorize(erf, otypes=[np.float64])(x)


def activation_function(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The standard activation ``name`` as a numpy function (float64 in, float64 out)."""
    functions: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "relu": lambda x: np.maximum(x, 0.0),
        "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
        "silu": lambda x: x / (1.0 + np.exp(-x)),
        "tanh": np.tanh,
        "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
        "identity": lambda x: np.asarray(x, dtype=np.float64).copy(),
        "leaky_relu": lambda x: np.where(x >= 0, x, LEAKY_RELU_SLOPE * x),
    }
    if name not in functions:
        raise LutnetError("unknown activation function", expected=f"one of {sorted(functions)}", got=repr(name))
    return lambda x: functions[name](np.asarray(x, dtype=np.float64))


def check_table(table: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Raise if ``table``, ``lo`` and ``hi`` do not describe a valid per-channel table."""
    if table.ndim != 2 or table.shape[1] < 2:
        raise LutnetError("table shape", expected="[C, K+1] with K >= 1", got=list(table.shape))
    rows = table.shape[0]
    for name, edge in (("lo", lo), ("hi", hi)):
        if edge.shape != (rows,):
            raise LutnetError(f"{name} shape", expected=[rows], got=list(edge.shape))
    if not np.all(np.isfinite(table)) or not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)):
        raise LutnetError("table values", expected="finite numbers", got="NaN or Inf")
    if np.any(hi <= lo):
        bad = int(np.argmax(hi <= lo))
        raise LutnetError(f"range of channel {bad}", expected="hi > lo", got=f"lo={lo[bad]}, hi={hi[bad]}")


def knot_positions(lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Input values of the K+1 knots of every channel, ``[C, K+1]``."""
    steps = np.linspace(0.0, 1.0, bins + 1)
    lo = np.asarray(lo, dtype=np.float64)[:, None]
    hi = np.asarray(hi, dtype=np.float64)[:, None]
    return lo + (hi - lo) * steps  # (C, K+1)


def bin_coordinate(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int, channel_axis: int = 1) -> np.ndarray:
    """Table coordinate ``u = (x - lo) / h`` per channel; knot k sits at ``u = k``."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    lo_b = np.asarray(lo, dtype=np.float64).reshape(shape)
    step = (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)).reshape(shape) / bins
    return (np.asarray(x, dtype=np.float64) - lo_b) / step


def lookup(u: np.ndarray, table: np.ndarray, mode: str = "linear", extrapolate: str = "clamp", channel_axis: int = 1) -> np.ndarray:
    """Evaluate the table at coordinates ``u`` (float64 reference; any shape with channels on ``channel_axis``)."""
    if mode not in MODES:
        raise LutnetError("LUT mode", expected=f"one of {list(MODES)}", got=repr(mode))
    if extrapolate not in EXTRAPOLATIONS:
        raise LutnetError("LUT extrapolation", expected=f"one of {list(EXTRAPOLATIONS)}", got=repr(extrapolate))
    table = np.asarray(table, dtype=np.float64)
    bins = table.shape[1] - 1
    u = np.moveaxis(np.asarray(u, dtype=np.float64), channel_axis, -1)  # (..., C)
    channels = np.arange(u.shape[-1]) if table.shape[0] > 1 else np.zeros(u.shape[-1], dtype=np.int64)
    inside = np.clip(u, 0.0, float(bins))
    if mode == "linear":
        left = np.minimum(np.floor(inside), bins - 1).astype(np.int64)
        frac = (u if extrapolate == "linear" else inside) - left
        y = table[channels, left] + frac * (table[channels, left + 1] - table[channels, left])
    else:
        y = table[channels, np.floor(inside + 0.5).astype(np.int64)]
        if extrapolate == "linear":
            below = table[channels, 0] + u * (table[channels, 1] - table[channels, 0])
            above = table[channels, bins] + (u - bins) * (table[channels, bins] - table[channels, bins - 1])
            y = np.where(u < 0, below, np.where(u > bins, above, y))
    return np.moveaxis(y, -1, channel_axis)


def lut_forward(
    x: np.ndarray,
    table: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    mode: str = "linear",
    extrapolate: str = "clamp",
    channel_axis: int = 1,
) -> np.ndarray:
    """The activation of ``x`` (channels on ``channel_axis``) through per-channel tables, in float64."""
    table, lo, hi = (np.asarray(a, dtype=np.float64) for a in (table, lo, hi))
    check_table(table, lo, hi)
    channels = x.shape[channel_axis]
    if table.shape[0] not in (1, channels):
        raise LutnetError("table rows", expected=f"1 or {channels} (channels of the input)", got=table.shape[0])
    u = bin_coordinate(x, lo, hi, table.shape[1] - 1, channel_axis)
    return lookup(u, table, mode, extrapolate, channel_axis)


def init_table(function: str, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """A table whose knots sample ``function`` exactly: ``T[c, k] = f(lo_c + k h_c)``."""
    return activation_function(function)(knot_positions(lo, hi, bins))


def resample_table(
    table: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    new_lo: np.ndarray,
    new_hi: np.ndarray,
    new_bins: int,
    mode: str = "linear",
    extrapolate: str = "clamp",
) -> np.ndarray:
    """Knots over ``[new_lo, new_hi]`` that sample the function the old table represents.

    The result equals the old function at every new knot, so in ``linear`` mode it agrees exactly
    wherever the new grid contains the old knots and within the linear-interpolation error elsewhere.
    """
    table, lo, hi = (np.asarray(a, dtype=np.float64) for a in (table, lo, hi))
    positions = knot_positions(new_lo, new_hi, new_bins)  # (C, K'+1)
    if table.shape[0] == 1 and positions.shape[0] > 1:
        table, lo, hi = (np.repeat(a, positions.shape[0], axis=0) for a in (table, lo, hi))
    return lut_forward(positions, table, lo, hi, mode, extrapolate, channel_axis=0)


def table_movement(table: np.ndarray, lo: np.ndarray, hi: np.ndarray, init: str) -> float:
    """How far a layer's tables moved from their init function: ``||T - f(knots)|| / ||f(knots)||`` over all channels.

    ``f(knots)`` is the init function sampled on the table's current grid, so a recalibrated range does not
    count as movement; 0 means the tables still are the function they started as.
    """
    table = np.asarray(table, dtype=np.float64)
    start = init_table(init, lo, hi, table.shape[1] - 1)
    return float(np.linalg.norm(table - start) / max(np.linalg.norm(start), np.finfo(np.float64).tiny))


def second_difference_l1(table: np.ndarray) -> float:
    """Smoothness penalty TV(2): L1 norm of the table's second differences, summed over channels."""
    table = np.asarray(table, dtype=np.float64)
    return float(np.abs(table[:, 2:] - 2.0 * table[:, 1:-1] + table[:, :-2]).sum())


def linear_interpolation_bound(lo: np.ndarray, hi: np.ndarray, bins: int, max_second_derivative: float) -> np.ndarray:
    """Classical bound ``h^2 / 8 * max|f''|`` on linear interpolation error, per channel."""
    step = (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)) / bins
    return step**2 / 8.0 * max_second_derivative
