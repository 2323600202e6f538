"""The native CPU lookup: a torch operator built from ``lut_op.cpp`` + ``lut_kernel.c`` on first use, optional.

A LUT layer's pure-torch lookup is a score of small tensor ops per training step, and on the small
batches of CPU training their dispatch overhead, not arithmetic, dominates a LUT-MLP epoch
(benchmarks/RESULTS.md, training cost). The native operator does the forward pass in one C++ call and the backward pass in another, through
an autograd node written in C++ (no Python between them), with the same float operations as the torch path, so
results are bit-identical.

The library is compiled once with the system C++ compiler against the installed torch's headers into a
cache directory (``$LUTNET_CACHE_DIR``, default ``~/.cache/lutnet``), under a name keyed by the sources,
the compiler's version, the torch version and the flags. Without a compiler, on
any build or load failure, or with ``LUTNET_NATIVE=0``, :func:`kernel` returns ``None`` and the layer uses
the torch path (logged once at debug level).
"""
from __future__ import annotations

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

HERE = Path(__file__).resolve().parent
SOURCES = (HERE / "lut_op.cpp", HERE / "lut_kernel.c")  # the operator includes the kernel
COMPILER = "c++"
# No -march=native: the cache may be shared by machines of different CPUs. No contraction into FMA,
# which would round differently from the torch path.
FLAGS = ("-O3", "-fPIC", "-shared", "-std=c++20", "-ffp-contract=off", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
LIBRARIES = ("-ltorch", "-ltorch_cpu", "-lc10", "-lm")
DTYPES = (torch.float32, torch.float64)

log = logging.getLogger(__name__)


class LookupKernel:
    """The native operators of one loaded build, for contiguous CPU tensors."""

    def __init__(self, namespace: str) -> None:
        ops = getattr(torch.ops, namespace)
        self._lookup, self._smoothness, self._add_smoothness = ops.lookup, ops.smoothness_gradient, ops.add_smoothness_gradients_
        self._fused = {dtype: addcmul_is_fused(dtype) for dtype in DTYPES}

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        return x.is_cpu and x.dtype in DTYPES

    def lookup(self, x: torch.Tensor, table: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, nearest: bool, clamp: bool) -> torch.Tensor:
        """``y``, differentiable in ``x`` and ``table``: ``x`` is ``[B, C, ...]``, ``table`` ``[R, K+1]``, ``lo`` and ``step`` hold ``R`` values."""
        return self._lookup(x, table, lo, step, nearest, clamp, self._fused[x.dtype])

    def smoothness_gradient(self, table: torch.Tensor) -> torch.Tensor:
        """The TV(2) (sub)gradient of a contiguous ``[R, K+1]`` table (``LUTActivation.smoothness_gradient``)."""
        return self._smoothness(table)

    def add_smoothness_gradients_(self, grads: list[torch.Tensor], tables: list[torch.Tensor], weight: float) -> None:
        """``grad += weight * smoothness_gradient(table)`` for each pair, in one call."""
        self._add_smoothness(grads, tables, weight)


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
        library, namespace = build()
        if not _registered(namespace):  # an identical build loaded earlier in this process already registered it
            torch.ops.load_library(str(library))
        return LookupKernel(namespace)
    except (OSError, subprocess.SubprocessError, AttributeError, RuntimeError) as error:
        log.debug("native LUT kernel unavailable, using the torch path: %s", error)
        return None


def needs_build() -> bool:
    """Whether the first :func:`kernel` call of this process will compile the library (so a caller can say so first)."""
    if os.environ.get("LUTNET_NATIVE", "1") == "0" or kernel.cache_info().currsize:
        return False
    try:
        return not _paths()[0].exists()
    except (OSError, subprocess.SubprocessError):
        return False


def build() -> tuple[Path, str]:
    """The compiled library in the cache directory and its operator namespace, compiling it first if needed."""
    library, namespace, command = _paths()
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=library.parent) as staging:
            built = Path(staging) / library.name
            subprocess.run([*command, "-o", str(built)], capture_output=True, check=True, timeout=600)
            os.replace(built, library)  # atomic: a concurrent process sees no library or a whole one
    return library, namespace


def _paths() -> tuple[Path, str, list[str]]:
    """Where this build's library lives, its namespace, and the compiler command without its output."""
    from torch.utils import cpp_extension  # only to locate torch's headers and libraries
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise OSError(f"no C++ compiler {COMPILER!r} on PATH")
    version = subprocess.run([compiler, "--version"], capture_output=True, check=True, timeout=30).stdout
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in SOURCES) + version + torch.__version__.encode() + " ".join(FLAGS).encode())
    key = digest.hexdigest()[:16]
    namespace = f"lutnet_{key}"
    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    links = [flag for path in cpp_extension.library_paths() for flag in (f"-L{path}", f"-Wl,-rpath,{path}")]
    command = [compiler, *FLAGS, f"-DLUTNET_OPS={namespace}", *includes, str(SOURCES[0]), *links, *LIBRARIES]
    cache = Path(os.environ.get("LUTNET_CACHE_DIR") or Path.home() / ".cache" / "lutnet")
    return cache / f"lut_op_{key}.so", namespace, command


def _registered(namespace: str) -> bool:
    try:
        getattr(torch.ops, namespace).lookup  # noqa: B018  # resolving it is the check
    except (AttributeError, RuntimeError):
        return False
    return True
