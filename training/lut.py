"""LUTActivation: a learned per-channel lookup-table activation, the torch twin of ``lutnet.lut``.

The function a table represents is defined in ``lutnet/lut.py``; this module computes exactly that
function in torch, with gradients, without ever materializing a ``[B, C, K]`` tensor.

How it stays cheap: per call the table ``T[R, K+1]`` (R = C channels, or 1 when shared) is packed with
its edge-continued segment slopes ``S[R, K+1]`` (``S[k] = T[k+1] - T[k]``, ``S[K] = S[K-1]``) into one
complex table ``P = T + iS``. Every element then needs one flat index, one ``index_select`` of ``P``
and one multiply-add; the backward pass needs one ``index_add_`` of complex gradients. Autograd maps the
gradient of ``P`` back to ``T`` through the (tiny, ``[R, K+1]``) packing.

Gradients:

- ``linear``: exact. ``y = T[k] + f S[k]`` with ``k = min(floor(clip(u, 0, K)), K-1)`` and ``f = u - k``
  (``f = clip(u, 0, K) - k`` under ``clamp``, which makes the input gradient zero outside the range).
- ``nearest``: the table gradient is exact (one knot per input, plus the edge segment when extrapolating
  linearly). The input gradient is straight-through: it is the derivative of the ``linear``-mode function
  of the same table at the same point, ``S[k] / h`` with ``k`` as above (zero outside under ``clamp``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lutnet.lut import init_table, resample_table
from lutnet.spec import LUTSpec

# Calibrated ranges narrower than this get widened around their centre, so a dead channel keeps a usable grid.
MIN_CALIBRATED_WIDTH = 1e-2


def pack_table(table: torch.Tensor) -> torch.Tensor:
    """``T + iS``: knot values with the slope of the segment to their right (the last knot repeats its left one)."""
    slopes = table[:, 1:] - table[:, :-1]  # (R, K)
    return torch.complex(table, torch.cat([slopes, slopes[:, -1:]], dim=1))  # (R, K+1)


class _Lookup(torch.autograd.Function):
    """``y = lookup(x)`` through a packed table; the backward pass is written out so it stays ``O(B C)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, packed: torch.Tensor, lo: torch.Tensor, step: torch.Tensor,
                offsets: torch.Tensor, nearest: bool, clamp: bool) -> torch.Tensor:
        bins = packed.shape[1] - 1
        u = (x - lo) / step  # (B, C, ...) table coordinate, computed as the numpy reference does
        inside = u.clamp(0.0, bins)
        left = inside.clamp(max=bins - 1).floor()
        knot = (inside + 0.5).floor() if nearest else left
        # How far to move along the picked knot's slope: from the knot in linear mode; in nearest mode only
        # past the range edge (zero inside), where linear extrapolation continues the edge segment.
        along = (inside if clamp else u) - (inside if nearest else knot)
        flat = (knot + offsets).long().reshape(-1)  # knot + row * (K+1): exact integers in float32 below 2**24
        picked = torch.view_as_real(packed.view(-1).index_select(0, flat)).view(*x.shape, 2)
        value, slope = picked[..., 0], picked[..., 1]
        y = value + along * slope
        if nearest:
            slope = torch.view_as_real(packed.view(-1).index_select(0, (left + offsets).long().reshape(-1)))[:, 1].view(x.shape)
        if clamp:
            slope = slope * (u == inside)
        ctx.save_for_backward(flat, along, slope, step)
        ctx.packed_shape = packed.shape
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        flat, along, slope, step = ctx.saved_tensors
        grad_x = grad * slope / step if ctx.needs_input_grad[0] else None
        grad_packed = None
        if ctx.needs_input_grad[1]:
            # d y / d value = 1 and d y / d slope = along, accumulated per knot in one complex index_add_.
            source = torch.complex(grad, grad * along).reshape(-1)
            grad_packed = torch.zeros(ctx.packed_shape.numel(), dtype=source.dtype, device=source.device).index_add_(0, flat, source).view(ctx.packed_shape)
        return grad_x, grad_packed, None, None, None, None, None


class LUTActivation(nn.Module):
    """Per-channel learned activation: ``T[C, K+1]`` knots over ``[lo_c, hi_c]`` (one shared row if ``shared``).

    Input ``[B, C]`` or ``[B, C, H, W]`` (channels on dim 1). ``table`` is a parameter; ``lo`` and ``hi``
    are buffers, set by :meth:`calibrate`. The function equals ``lutnet.lut.lut_forward``.
    """

    def __init__(self, channels: int, bins: int = 64, range: tuple[float, float] = (-4.0, 4.0), mode: str = "linear",
                 extrapolate: str = "clamp", init: str = "relu", shared: bool = False) -> None:
        super().__init__()
        LUTSpec(bins=bins, mode=mode, extrapolate=extrapolate, init=init, shared=shared, range=tuple(range)).validate("LUTActivation")
        self.channels, self.bins, self.mode, self.extrapolate, self.init = channels, bins, mode, extrapolate, init
        rows = 1 if shared else channels
        lo, hi = np.full(rows, float(range[0])), np.full(rows, float(range[1]))
        self.table = nn.Parameter(torch.tensor(init_table(init, lo, hi, bins), dtype=torch.float32))  # (R, K+1)
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32))  # (R,)
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float32))  # (R,)
        self.register_buffer("offsets", torch.arange(rows, dtype=torch.float32) * (bins + 1), persistent=False)  # (R,)

    @property
    def shared(self) -> bool:
        return self.table.shape[0] == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(f"LUTActivation input: expected [B, {self.channels}] or [B, {self.channels}, H, W], got {list(x.shape)}")
        shape = (1, -1) + (1,) * (x.dim() - 2)
        lo, step = self.lo.view(shape), ((self.hi - self.lo) / self.bins).view(shape)
        offsets = self.offsets.to(x.dtype).view(shape)
        return _Lookup.apply(x, pack_table(self.table), lo.to(x.dtype), step.to(x.dtype), offsets,
                             self.mode == "nearest", self.extrapolate == "clamp")

    def smoothness(self) -> torch.Tensor:
        """TV(2): L1 norm of the table's second differences (``lutnet.lut.second_difference_l1``)."""
        return (self.table[:, 2:] - 2.0 * self.table[:, 1:-1] + self.table[:, :-2]).abs().sum()

    @torch.no_grad()
    def calibrate(self, pre_activations: torch.Tensor, lower_percentile: float = 1.0, upper_percentile: float = 99.0) -> None:
        """Set each row's range to percentiles of ``pre_activations`` and resample the table to keep its function.

        The new knots sample the function the old table represents (``lutnet.lut.resample_table``), so the
        layer's output changes only by linear-interpolation error between the new knots.
        """
        values = pre_activations.detach().double().transpose(0, 1).reshape(self.channels, -1)  # (C, N)
        if self.shared:
            values = values.reshape(1, -1)
        quantiles = torch.tensor([lower_percentile, upper_percentile], dtype=torch.float64) / 100.0
        new_lo, new_hi = torch.quantile(values, quantiles, dim=1).numpy()  # (R,), (R,)
        centre, width = (new_lo + new_hi) / 2.0, np.maximum(new_hi - new_lo, MIN_CALIBRATED_WIDTH)
        new_lo, new_hi = centre - width / 2.0, centre + width / 2.0
        table = resample_table(self.table.double().cpu().numpy(), self.lo.double().cpu().numpy(), self.hi.double().cpu().numpy(),
                               new_lo, new_hi, self.bins, self.mode, self.extrapolate)
        self.table.copy_(torch.from_numpy(table))
        self.lo.copy_(torch.from_numpy(new_lo))
        self.hi.copy_(torch.from_numpy(new_hi))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, bins={self.bins}, mode={self.mode}, extrapolate={self.extrapolate}, init={self.init}, shared={self.shared}"
