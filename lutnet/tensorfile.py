"""Named numpy arrays in safetensors files, through the safetensors library: atomic writes, errors that name the file.

The format (no pickle, readable by any framework) belongs to the safetensors library; this module only
adds what every lutnet file gets: writes that appear whole or not at all, and a ``CheckpointError`` that
says which file is unreadable and why.
"""
from __future__ import annotations

import os

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from lutnet.atomic import write_bytes_atomic
from lutnet.errors import CheckpointError


def save(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """Serialize named numpy arrays to safetensors bytes: the same tensors always give the same bytes.

    The library writes metadata entries in an order that changes from process to process, so a file may carry at
    most one entry (a resumed training run must write the bytes an uninterrupted one writes).
    """
    if metadata is not None and len(metadata) > 1:
        raise CheckpointError("safetensors metadata", expected="at most one entry (several are written in a varying order)", got=sorted(metadata))
    try:
        return safetensors.numpy.save({name: np.ascontiguousarray(value) for name, value in tensors.items()}, metadata=metadata)
    except (SafetensorError, TypeError, ValueError) as exc:
        raise CheckpointError("tensors", expected="numpy arrays of a safetensors dtype", got=str(exc)) from None


def load(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse safetensors bytes into named, writable numpy arrays; corrupt input raises ``CheckpointError``."""
    try:
        return safetensors.numpy.load(data)
    except SafetensorError as exc:
        raise CheckpointError(f"{source} is corrupt or truncated", expected="a safetensors file", got=str(exc)) from None


def save_file(tensors: dict[str, np.ndarray], path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """Write tensors to ``path`` atomically."""
    write_bytes_atomic(path, save(tensors, metadata))


def load_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CheckpointError("tensor file", expected=f"{os.fspath(path)} to exist", got="no such file") from None
    return load(data, source=os.fspath(path))
