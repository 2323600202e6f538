"""lutnet: learned lookup-table activations, trained in PyTorch, merged into plain ONNX, served over HTTP.

This core package holds the contracts every other package shares and depends on numpy alone.
"""
from __future__ import annotations

__version__ = "0.1.0"

from lutnet.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from lutnet.errors import CheckpointError, DataError, LutnetError
from lutnet.lut import init_table, lut_forward, resample_table
from lutnet.spec import LUTSpec, ModelSpec

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DataError",
    "LUTSpec",
    "LutnetError",
    "ModelSpec",
    "__version__",
    "init_table",
    "lut_forward",
    "read_checkpoint",
    "resample_table",
    "write_checkpoint",
]
