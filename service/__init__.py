"""Serving of fused lutnet models: onnxruntime behind FastAPI, Open Inference Protocol v2, batching, metrics.

``lutnet serve`` (``lutnet.service.cli``) runs it; ``create_app(settings, registry)`` builds the app for tests
and embedding. This package never imports torch, onnx, ``training`` or ``export``.
"""

from __future__ import annotations

from lutnet.ortenv import disable_onnxruntime_telemetry

disable_onnxruntime_telemetry()  # before lutnet.service.runtime imports onnxruntime (see lutnet.ortenv)

from lutnet.errors import require_extra

require_extra("lutnet.service", "serve", "onnxruntime", "fastapi", "uvicorn")

from lutnet.service.app import create_app
from lutnet.service.batching import MicroBatcher
from lutnet.service.dataplane import DataPlane
from lutnet.service.errors import BadRequest, MethodNotAllowed, ModelLoadError, NotFound, PayloadTooLarge, ServiceError, Unauthorized, Unavailable
from lutnet.service.metrics import ServiceMetrics
from lutnet.service.repository import ModelRegistry
from lutnet.service.settings import Settings

__all__ = [
    "BadRequest",
    "DataPlane",
    "MethodNotAllowed",
    "MicroBatcher",
    "ModelLoadError",
    "ModelRegistry",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "ServiceMetrics",
    "Settings",
    "Unauthorized",
    "Unavailable",
    "create_app",
]
