"""Merge a checkpoint (or any torch module with LUT layers) into a fused ONNX graph, verify it, write it to a model repository.

``export_module`` needs torch and imports it only when called.
"""
from __future__ import annotations

from lutnet.errors import require_extra

require_extra("lutnet.export", "export", "onnx", "onnxruntime")

from lutnet.export.exporter import ExportResult, export_file, export_model, export_to_repository
from lutnet.export.graph import build_graph
from lutnet.export.lookups import LoweredModel, lower_lookups
from lutnet.export.torch_module import ModuleExportError, export_module
from lutnet.export.monitor import Coordinate, monitor_graph, range_card
from lutnet.export.verify import Verification, VerificationError, probe_inputs, verify

__all__ = [
    "Coordinate",
    "ExportResult",
    "LoweredModel",
    "ModuleExportError",
    "Verification",
    "VerificationError",
    "build_graph",
    "export_file",
    "export_module",
    "export_model",
    "export_to_repository",
    "lower_lookups",
    "monitor_graph",
    "probe_inputs",
    "range_card",
    "verify",
]
