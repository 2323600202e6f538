"""LUTActivation: a learned per-channel lookup-table activation, the torch twin of ``lutnet.lut``.

The function a table represents is defined in ``lutnet/lut.py``; this module computes exactly that
function in torch, with gradients, without ever materializing a ``[B, C, K]`` tensor.

How it stays cheap: on CPU (float32/float64) the lookup is a native torch operator (``lutnet.training.native``,
C++ compiled on first use) with its own autograd node: one call forward, one backward, no Python
between them, bit-identical to the torch ops below. Those remain the path on CUDA and wherever no
compiler is found: they read the table ``T[R, K+1]`` (R = C channels, or 1 when shared) through its
flat view with one index per element, ``k + row (K+1)``; the right-hand knot ``T[k+1]`` comes from the
same indices on the view shifted by one, so no second index tensor is built. Their backward pass is
``scatter_add_`` calls into the flat table gradient (the last into the shifted view). Everything per
element is ``O(B C)``; the only other work is ``O(R K)``.

Gradients, with ``k = floor(clip(u, 0, K-1))`` the left knot of the segment holding ``u`` (or the edge
segment outside the range) and ``S = T[k+1] - T[k]`` its rise:

- ``linear``: exact. ``y = T[k] + f S`` with ``f = u - k`` (``clip(u, 0, K) - k`` under ``clamp``,
  which makes the input gradient zero outside the range).
- ``nearest``: ``y = T[n] + d S`` with ``n = floor(clip(u, 0, K) + 0.5)`` and ``d = u - clip(u, 0, K)``
  (zero inside the range, and always under ``clamp``). The table gradient is exact. The input gradient
  is straight-through: the derivative of the ``linear``-mode function of the same table at the same
  point, ``S / h`` (zero outside under ``clamp``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from lutnet.errors import LutnetError
from lutnet.lut import init_table, resample_table
from lutnet.spec import LUTSpec
from lutnet.training.native import kernel

# Calibrated ranges narrower than this get widened around their centre, so a dead channel keeps a usable grid.
MIN_CALIBRATED_WIDTH = 1e-2


class _Lookup(torch.autograd.Function):
    """``y = lookup(x)`` through table ``T`` with the torch ops below; the backward pass is written out so it stays ``O(B C)``.

    The path on CUDA and without the native operator (which computes the same, bit for bit).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, table: torch.Tensor, lo: torch.Tensor, step: torch.Tensor,
                offsets: torch.Tensor, nearest: bool, clamp: bool) -> torch.Tensor:
        ctx.table_shape = table.shape
        y, *saved = _torch_forward(x, table, lo, step, offsets, nearest, clamp)
        ctx.save_for_backward(*saved, step)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        *saved, step = ctx.saved_tensors
        needs_x, needs_table = ctx.needs_input_grad[:2]
        grad_x, grad_table = _torch_backward(grad, saved, step, ctx.table_shape, needs_x, needs_table)
        return grad_x, grad_table, None, None, None, None, None


def _torch_forward(x: torch.Tensor, table: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, offsets: torch.Tensor,
                   nearest: bool, clamp: bool) -> tuple[torch.Tensor | None, ...]:
    """``y`` and what the backward pass needs: flat knot indices, nearest-knot indices, distances, masked rises."""
    bins = table.shape[1] - 1
    knots = table.view(-1)  # (R (K+1),)
    u = (x - lo) / step  # (B, C, ...) table coordinate, computed as the numpy reference does
    left = u.clamp(0.0, bins - 1).floor_()
    flat = (left + offsets).long().view(-1)  # k + row (K+1): integers below 2**24, exact in float32
    value = knots.index_select(0, flat)  # T[k], (B C ...,)
    slope = knots[1:].index_select(0, flat).sub_(value)  # T[k+1] - T[k]
    inside = u.clamp(0.0, bins) if clamp or nearest else u
    picked = None
    if nearest:
        picked = ((inside + 0.5).floor_() + offsets).long().view(-1)
        value = knots.index_select(0, picked)  # T[n]
        along = None if clamp else (u - inside).view(-1)  # non-zero only past the range edge
    else:
        along = (inside - left).view(-1)
    y = value if along is None else torch.addcmul(value, along, slope)
    if clamp:
        slope.mul_((u == inside).view(-1))
    return y.view(x.shape), flat, picked, along, slope


def _torch_backward(grad: torch.Tensor, saved: list[torch.Tensor | None], step: torch.Tensor, table_shape: torch.Size,
                    needs_x: bool, needs_table: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``grad_x`` and ``grad_table`` from what :func:`_torch_forward` saved."""
    flat, picked, along, slope = saved
    grad_x = (grad * slope.view(grad.shape)).div_(step) if needs_x else None
    if not needs_table:
        return grad_x, None
    grad = grad.reshape(-1)
    grad_table = torch.zeros(table_shape.numel(), dtype=grad.dtype, device=grad.device)
    moved = None if along is None else grad * along  # d y / d (T[k+1] - T[k])
    if picked is not None:
        grad_table.scatter_add_(0, picked, grad)
        if moved is not None:
            grad_table.scatter_add_(0, flat, -moved)
    else:
        grad_table.scatter_add_(0, flat, grad - moved)
    if moved is not None:
        grad_table[1:].scatter_add_(0, flat, moved)
    return grad_x, grad_table.view(table_shape)


def add_smoothness_gradients_(layers: list[LUTActivation], weight: float) -> None:
    """``table.grad += weight * smoothness_gradient()`` for every layer: the penalty ``weight * smoothness()`` in the gradients.

    On CPU one native call for all tables (no autograd is involved: the operator only reads their values).
    """
    native = kernel()
    tables = [layer.table for layer in layers]
    if native is not None and all(native.supports(t) and t.is_contiguous() for t in tables):
        native.add_smoothness_gradients_([t.grad for t in tables], tables, weight)
        return
    for layer in layers:
        layer.table.grad.add_(layer.smoothness_gradient(), alpha=weight)


class ChannelError(LutnetError, ValueError):
    """A LUT layer got an input whose channel dimension does not match its table."""


@torch.library.custom_op("lutnet::lut_lookup", mutates_args=())
def lut_lookup(x: torch.Tensor, table: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, dim: int, channels: int,
               mode: str, extrapolate: str) -> torch.Tensor:
    """One LUT layer as a single opaque operator: what ``torch.onnx.export`` sees of a :class:`LUTActivation`.

    ``lutnet.export`` translates it to one ONNX placeholder node (``lutnet.export.lookups``), which its
    ONNX-level pass folds and replaces by the Gather-family lookup. Eagerly it computes the layer's function.
    """
    moved = x.movedim(dim, 1)
    shape = (1, -1, 1)
    step = (hi - lo) / (table.shape[1] - 1)
    offsets = torch.arange(len(lo), dtype=x.dtype) * table.shape[1]
    flat = moved.reshape(moved.shape[0], channels, -1).contiguous()  # (B, C, N)
    y = _Lookup.apply(flat, table, lo.view(shape), step.view(shape), offsets.view(shape), mode == "nearest", extrapolate == "clamp")
    return y.reshape(moved.shape).movedim(1, dim)


@lut_lookup.register_fake
def _lut_lookup_shape(x: torch.Tensor, table: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, dim: int, channels: int,
                      mode: str, extrapolate: str) -> torch.Tensor:
    return torch.empty_like(x)


class LUTActivation(LazyModuleMixin, nn.Module):
    """Per-channel learned activation: ``T[C, K+1]`` knots over ``[lo_c, hi_c]`` (one shared row if ``shared``).

    Channels sit on dimension ``dim`` of the input: 1 for ``[B, C]`` and ``[B, C, H, W]``, -1 for
    channels-last ``[B, T, C]``. With ``channels=None`` the layer is lazy (like ``nn.LazyLinear``): the
    first forward pass (a calibration, or one example batch) reads the channel count and creates the
    table. ``table`` is a parameter; ``lo`` and ``hi`` are buffers, set by :meth:`calibrate`. The function
    equals ``lutnet.lut.lut_forward`` along ``dim``.
    """

    # Defaults are LUTSpec's, so a layer built by hand matches one built from a model spec.
    def __init__(self, channels: int | None = None, bins: int = LUTSpec.bins, range: tuple[float, float] = LUTSpec.range,
                 mode: str = LUTSpec.mode, extrapolate: str = LUTSpec.extrapolate, init: str = LUTSpec.init, shared: bool = LUTSpec.shared,
                 dim: int = 1) -> None:
        super().__init__()
        LUTSpec(bins=bins, mode=mode, extrapolate=extrapolate, init=init, shared=shared, range=tuple(range)).validate("LUTActivation")
        if channels is not None and not (isinstance(channels, int) and channels >= 1):
            raise LutnetError("LUTActivation channels", expected="a positive integer, or None to infer it from the first input", got=repr(channels))
        self.channels, self.bins, self.mode, self.extrapolate, self.init = channels, bins, mode, extrapolate, init
        self.dim, self.range, self._shared = dim, (float(range[0]), float(range[1])), shared
        self._grid_key: tuple = ()
        self._grid: tuple[torch.Tensor, ...] = ()
        if channels is None:
            self.table = nn.UninitializedParameter()
            self.register_buffer("lo", nn.UninitializedBuffer())
            self.register_buffer("hi", nn.UninitializedBuffer())
            return
        table, lo, hi = self._initial_tensors(channels)
        self.table = nn.Parameter(table)  # (R, K+1)
        self.register_buffer("lo", lo)  # (R,)
        self.register_buffer("hi", hi)  # (R,)

    def _initial_tensors(self, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The table of the init function over the initial range, and that range, for ``channels`` channels."""
        rows = 1 if self._shared else channels
        lo, hi = np.full(rows, self.range[0]), np.full(rows, self.range[1])
        table = torch.tensor(init_table(self.init, lo, hi, self.bins), dtype=torch.float32)
        return table, torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)

    @torch.no_grad()
    def initialize_parameters(self, x: torch.Tensor) -> None:
        """Lazy layers: read the channel count from the first input and create the table (LazyModuleMixin's hook)."""
        if not self.has_uninitialized_params():
            if self.channels is None:  # materialized by loading a state dict: the table says how many channels
                self.channels = int(x.shape[self._channel_dim(x)]) if self.shared else self.table.shape[0]
            return
        self.channels = int(x.shape[self._channel_dim(x)])
        table, lo, hi = self._initial_tensors(self.channels)
        for tensor, initial in ((self.table, table), (self.lo, lo), (self.hi, hi)):
            tensor.materialize(initial.shape, dtype=initial.dtype)
            tensor.copy_(initial)

    def _channel_dim(self, x: torch.Tensor) -> int:
        if x.dim() < 2 or not -x.dim() <= self.dim < x.dim() or self.dim % x.dim() == 0:
            raise ChannelError(f"LUTActivation input {list(x.shape)} with channels on dim {self.dim}",
                               expected="a batch dimension first and the channel dimension after it", got=f"{x.dim()} dimensions")
        return self.dim % x.dim()

    @property
    def shared(self) -> bool:
        return self.table.shape[0] == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self._channel_dim(x)
        if x.shape[dim] != self.channels:
            raise ChannelError(f"LUTActivation input {list(x.shape)}, channels on dim {self.dim}", expected=f"{self.channels} channels",
                               got=f"{x.shape[dim]}")
        if torch.compiler.is_exporting():
            return lut_lookup(x, self.table, self.lo, self.hi, dim, self.channels, self.mode, self.extrapolate)
        if dim != 1 or x.dim() not in (2, 4):
            # Channels to dim 1 and every other dimension after it flattened: the [B, C, N, 1] layout both lookups take.
            moved = x.movedim(dim, 1)
            return self._lookup(moved.reshape(moved.shape[0], self.channels, -1, 1)).reshape(moved.shape).movedim(1, dim)
        return self._lookup(x)

    def _lookup(self, x: torch.Tensor) -> torch.Tensor:
        """The lookup of ``x`` with channels on dim 1 (``[B, C]`` or ``[B, C, H, W]``)."""
        lo, step, offsets = self.grid(x)
        nearest, clamp, table = self.mode == "nearest", self.extrapolate == "clamp", self._parameters["table"]
        native = kernel()
        if native is not None and native.supports(x) and table.dtype == x.dtype:
            return native.lookup(x, table, lo, step, nearest, clamp)
        return _Lookup.apply(x, table, lo, step, offsets, nearest, clamp)

    def grid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``lo``, step ``h`` and flat row offsets ``row (K+1)``, shaped to broadcast over ``x``.

        Cached until ``lo`` or ``hi`` change (tensor version counters see calibration, state loading
        and DDP's buffer broadcasts), which saves a handful of small ops per call. Under
        ``torch.inference_mode`` it is recomputed every call: inference tensors have no version counter,
        and a grid made there could not be saved for a later backward pass.
        """
        lo, hi = self._buffers["lo"], self._buffers["hi"]  # straight from the dict: Module.__getattr__ costs per call
        if torch.is_inference_mode_enabled() or lo.is_inference() or hi.is_inference():
            return self._make_grid(x)
        key = (id(lo), lo._version, id(hi), hi._version, x.dtype, x.device, x.dim())
        if key != self._grid_key:
            self._grid, self._grid_key = self._make_grid(x), key
        return self._grid

    @torch.no_grad()
    def _make_grid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        lo, hi = self.lo.to(x.dtype), self.hi.to(x.dtype)
        offsets = torch.arange(len(lo), dtype=x.dtype, device=x.device) * (self.bins + 1)
        return lo.view(shape), ((hi - lo) / self.bins).view(shape), offsets.view(shape)

    def smoothness(self) -> torch.Tensor:
        """TV(2): L1 norm of the table's second differences (``lutnet.lut.second_difference_l1``)."""
        return torch.diff(self.table, n=2, dim=1).abs().sum()

    @torch.no_grad()
    def smoothness_gradient(self) -> torch.Tensor:
        """The (sub)gradient of :meth:`smoothness` with respect to ``table``, without autograd.

        It is the transposed second difference of the curvature signs (sign(0) = 0, as autograd's
        ``abs``). The trainer adds it straight to ``table.grad``: through autograd the penalty costs
        several times more on ``[C, K+1]`` tables, as much as the lookups themselves. On CPU the native
        kernel computes it in one call, bit-identical.
        """
        native = kernel()
        if native is not None and native.supports(self.table):
            return native.smoothness_gradient(self.table.detach().contiguous())
        sign = torch.diff(self.table, n=2, dim=1).sign_()  # (R, K-1)
        return torch.diff(F.pad(sign, (2, 2)), n=2, dim=1)  # (R, K+1)

    def add_smoothness_gradient_(self, weight: float) -> None:
        """``table.grad += weight * smoothness_gradient()``: the penalty ``weight * smoothness()`` in the gradient."""
        add_smoothness_gradients_([self], weight)

    @torch.no_grad()
    def calibrate(self, pre_activations: torch.Tensor, lower_percentile: float = 1.0, upper_percentile: float = 99.0) -> None:
        """Set each row's range to percentiles of ``pre_activations`` and resample the table to keep its function.

        The new knots sample the function the old table represents (``lutnet.lut.resample_table``), so the
        layer's output changes only by linear-interpolation error between the new knots.
        """
        self.initialize_parameters(pre_activations)
        dim = self._channel_dim(pre_activations)
        values = pre_activations.detach().double().movedim(dim, 0).reshape(self.channels, -1)  # (C, N)
        if self.shared:
            values = values.reshape(1, -1)
        quantiles = torch.tensor([lower_percentile, upper_percentile], dtype=torch.float64) / 100.0
        new_lo, new_hi = torch.quantile(values, quantiles, dim=1).numpy()  # (R,), (R,)
        centre, width = (new_lo + new_hi) / 2.0, np.maximum(new_hi - new_lo, MIN_CALIBRATED_WIDTH)
        self.resample_(centre - width / 2.0, centre + width / 2.0, self.bins, self.mode)

    @torch.no_grad()
    def resample_(self, new_lo: np.ndarray, new_hi: np.ndarray, bins: int, mode: str) -> None:
        """Move the knots to ``bins`` bins over ``[new_lo, new_hi]`` and evaluate them in ``mode``, keeping the function.

        The new knots sample the function the old table represents (``lutnet.lut.resample_table``).
        """
        table = resample_table(self.table.double().cpu().numpy(), self.lo.double().cpu().numpy(), self.hi.double().cpu().numpy(),
                               new_lo, new_hi, bins, self.mode, self.extrapolate)
        if bins != self.bins:
            self.table = nn.Parameter(torch.from_numpy(table).to(self.table))
        else:
            self.table.copy_(torch.from_numpy(table))
        self.lo.copy_(torch.from_numpy(np.asarray(new_lo)))
        self.hi.copy_(torch.from_numpy(np.asarray(new_hi)))
        self.bins, self.mode = bins, mode

    def extra_repr(self) -> str:
        shared = self._shared if self.has_uninitialized_params() else self.shared
        return (f"channels={self.channels}, bins={self.bins}, mode={self.mode}, extrapolate={self.extrapolate}, init={self.init}, "
                f"shared={shared}, dim={self.dim}")
