"""Read and write the safetensors format with numpy alone (no pickle, no framework).

Layout: 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus optional ``__metadata__`` of strings),
then the raw little-endian tensor bytes. Files written here are readable by the ``safetensors``
library and the other way round.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from lutnet.atomic import write_bytes_atomic
from lutnet.errors import CheckpointError

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def save(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """Serialize named numpy arrays to safetensors bytes."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    chunks, offset = [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        if little.dtype not in _NAMES:
            raise CheckpointError(f"dtype of tensor {name!r}", expected=f"one of {sorted(_DTYPES)}", got=str(array.dtype))
        raw = little.tobytes()
        header[name] = {"dtype": _NAMES[little.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # align the data section to 8 bytes, as the reference writer does
    return struct.pack("<Q", len(blob)) + blob + b"".join(chunks)


def load(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse safetensors bytes into named numpy arrays; corrupt input raises ``CheckpointError``."""
    if len(data) < 8:
        raise CheckpointError(f"{source} is not a safetensors file", expected="at least 8 bytes", got=f"{len(data)} bytes")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(_MAX_HEADER, len(data) - 8):
        raise CheckpointError(f"{source} has a corrupt header", expected=f"a header length <= {len(data) - 8}", got=size)
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{source} has a corrupt header", expected="JSON", got=str(exc)) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{source} has a corrupt header", expected="a JSON object", got=type(header).__name__)
    body = memoryview(data)[8 + size :]
    return {name: _tensor(name, info, body, source) for name, info in header.items() if name != "__metadata__"}


def _tensor(name: str, info: object, body: memoryview, source: str) -> np.ndarray:
    try:
        dtype = np.dtype(_DTYPES[info["dtype"]])  # type: ignore[index]
        shape = [int(d) for d in info["shape"]]  # type: ignore[index]
        begin, end = (int(v) for v in info["data_offsets"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{source}: entry for tensor {name!r}", expected="dtype, shape and data_offsets", got=info) from None
    count = int(np.prod(shape, dtype=np.int64))
    if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
        expected = f"{count * dtype.itemsize} bytes inside {len(body)}"
        raise CheckpointError(f"{source}: tensor {name!r} is truncated or corrupt", expected=expected, got=f"offsets [{begin}, {end}]")
    return np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()


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
