"""The native CPU lookup kernel (``lut_kernel.c``): compiled on first use, loaded with ctypes, optional.

A LUT layer's pure-torch lookup is about twenty small tensor ops per training step, and on the small
batches of CPU training their dispatch overhead, not arithmetic, made a LUT-MLP epoch cost twice a ReLU
one. The kernel does the forward pass in one call and the backward pass in another, with the same float
operations, so results are bit-identical to the torch path.

The C file is compiled once with the system C compiler into a cache directory (``$LUTNET_CACHE_DIR``,
default ``~/.cache/lutnet``), under a name keyed by the source and the compiler's version. Without a
compiler, on any build or load failure, or with ``LUTNET_NATIVE=0``, :func:`kernel` returns ``None`` and
the layer uses the torch path (logged once at debug level).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().with_name("lut_kernel.c")  # absolute: the file includes itself by its path
COMPILER = "cc"
# No -march=native: the cache may be shared by machines of different CPUs. No contraction into FMA,
# which would round differently from the torch path.
FLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off")
LIBRARIES = ("-lm",)
DTYPES = {torch.float32: "float32", torch.float64: "float64"}

log = logging.getLogger(__name__)
_int64, _int = ctypes.c_int64, ctypes.c_int
_pointer = ctypes.c_void_p


class LookupKernel:
    """Typed wrappers of the kernel's functions, taking contiguous CPU tensors."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._forward, self._backward, self._smoothness = {}, {}, {}
        for suffix in DTYPES.values():
            forward, backward = getattr(library, f"lut_forward_{suffix}"), getattr(library, f"lut_backward_{suffix}")
            forward.argtypes = [_pointer] * 4 + [_int64] * 5 + [_int] * 3 + [_pointer] * 5
            backward.argtypes = [_pointer] * 6 + [_int64] * 5 + [_int] * 2 + [_pointer] * 2
            smoothness = getattr(library, f"lut_smoothness_gradient_{suffix}")
            smoothness.argtypes = [_pointer, _int64, _int64, _pointer]
            forward.restype = backward.restype = smoothness.restype = None
            self._forward[suffix], self._backward[suffix], self._smoothness[suffix] = forward, backward, smoothness
        self._fused = {dtype: addcmul_is_fused(dtype) for dtype in DTYPES}

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        return x.is_cpu and x.dtype in DTYPES

    def forward(self, x: torch.Tensor, table: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, nearest: bool,
                clamp: bool) -> tuple[torch.Tensor | None, ...]:
        """``y`` and the saved ``(knot, picked, along, slope)`` (``picked`` is ``None`` in linear mode).

        ``x`` is ``[B, C, ...]``, ``table`` ``[R, K+1]``, ``lo`` and ``step`` hold ``R`` values; all contiguous.
        """
        count = x.numel()
        y, along, slope = torch.empty_like(x), torch.empty(count, dtype=x.dtype), torch.empty(count, dtype=x.dtype)
        knot = torch.empty(count, dtype=torch.int32)
        picked = torch.empty(count, dtype=torch.int32) if nearest else None
        self._forward[DTYPES[x.dtype]](
            x.data_ptr(), table.data_ptr(), lo.data_ptr(), step.data_ptr(), *layout(x), table.shape[0], table.shape[1] - 1,
            nearest, clamp, self._fused[x.dtype], y.data_ptr(), knot.data_ptr(), address(picked), along.data_ptr(), slope.data_ptr())
        return y, knot, picked, along, slope

    def backward(self, grad: torch.Tensor, saved: list[torch.Tensor | None], step: torch.Tensor, table_shape: torch.Size,
                 nearest: bool, clamp: bool, needs_x: bool, needs_table: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``grad_x`` and ``grad_table`` from ``grad`` (contiguous, shaped as ``x``) and what :meth:`forward` saved."""
        knot, picked, along, slope = saved
        grad_x = torch.empty_like(grad) if needs_x else None
        grad_table = torch.empty(table_shape, dtype=grad.dtype) if needs_table else None  # zeroed by the kernel
        self._backward[DTYPES[grad.dtype]](
            grad.data_ptr(), knot.data_ptr(), address(picked), along.data_ptr(), slope.data_ptr(), step.data_ptr(), *layout(grad),
            table_shape[0], table_shape[1] - 1, nearest, clamp, address(grad_x), address(grad_table))
        return grad_x, grad_table

    def smoothness_gradient(self, table: torch.Tensor) -> torch.Tensor:
        """The TV(2) (sub)gradient of a contiguous ``[R, K+1]`` table (``LUTActivation.smoothness_gradient``)."""
        gradient = torch.empty_like(table)
        self._smoothness[DTYPES[table.dtype]](table.data_ptr(), table.shape[0], table.shape[1] - 1, gradient.data_ptr())
        return gradient


def layout(x: torch.Tensor) -> tuple[int, int, int]:
    """``(B, C, H W)`` of ``[B, C]`` or ``[B, C, H, W]``: the kernel's ``(batch, channels, inner)``."""
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def addcmul_is_fused(dtype: torch.dtype) -> bool:
    """Whether ``torch.addcmul`` rounds ``c + a b`` once (a fused multiply-add) on this machine's CPU kernels.

    ``a = 1 + 2**-(m/2)`` (m the mantissa bits) makes ``a a`` inexact, so ``-(a a) + a a`` is its rounding
    error when fused and zero when not. A mixture (vector body and scalar tail differing) is refused.
    """
    mantissa_bits = round(-math.log2(torch.finfo(dtype).eps))
    a = torch.full((67,), 1.0 + 2.0 ** -(mantissa_bits // 2 + 1), dtype=dtype)
    residual = torch.addcmul(-(a * a), a, a)
    if (residual != 0).all():
        return True
    if (residual == 0).all():
        return False
    raise RuntimeError("torch.addcmul rounds some elements once and others twice; the native kernel cannot match it")


@functools.cache
def kernel() -> LookupKernel | None:
    """The loaded kernel, or ``None`` when it is switched off or cannot be built (the torch path is used)."""
    if os.environ.get("LUTNET_NATIVE", "1") == "0":
        log.debug("native LUT kernel switched off by LUTNET_NATIVE=0")
        return None
    try:
        return LookupKernel(ctypes.CDLL(str(build())))
    except (OSError, subprocess.SubprocessError, AttributeError, RuntimeError) as error:
        log.debug("native LUT kernel unavailable, using the torch path: %s", error)
        return None


def build() -> Path:
    """The compiled library in the cache directory, compiling it first if this source and compiler have none."""
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise OSError(f"no C compiler {COMPILER!r} on PATH")
    version = subprocess.run([compiler, "--version"], capture_output=True, check=True, timeout=30).stdout
    key = hashlib.sha256(SOURCE.read_bytes() + version + " ".join(FLAGS).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("LUTNET_CACHE_DIR") or Path.home() / ".cache" / "lutnet")
    library = cache / f"lut_kernel_{key}.so"
    if not library.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as staging:
            built = Path(staging) / library.name
            subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), *LIBRARIES], capture_output=True, check=True, timeout=120)
            os.replace(built, library)  # atomic: a concurrent process sees no library or a whole one
    return library
