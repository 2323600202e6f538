"""Merge a checkpoint into a fused ONNX graph, verify it against the numpy reference, write it to a model repository."""
from __future__ import annotations

from lutnet.errors import require_extra

require_extra("lutnet.export", "export", "onnx", "onnxruntime")

from lutnet.export.exporter import ExportResult, export_file, export_model, export_to_repository
from lutnet.export.graph import build_graph
from lutnet.export.monitor import Coordinate, monitor_graph, range_card
from lutnet.export.verify import Verification, VerificationError, probe_inputs, verify

__all__ = [
    "Coordinate",
    "ExportResult",
    "Verification",
    "VerificationError",
    "build_graph",
    "export_file",
    "export_model",
    "export_to_repository",
    "monitor_graph",
    "probe_inputs",
    "range_card",
    "verify",
]
