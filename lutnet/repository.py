"""Contract C: the model repository layout, Triton's: ``DIR/NAME/config.pbtxt`` beside ``DIR/NAME/V/model.onnx``.

The exporter writes this layout and the service reads it; both take the names and the model-name rule
from here.
"""
from __future__ import annotations

import re

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
# Beside model.onnx in a version folder: the same graph with one more output, metadata.SATURATION_OUTPUT. Not a version
# (only numeric folders are) and not the model file, so neither lutnet's scanner nor Triton's onnxruntime backend loads it.
MONITOR_FILE = "monitor.onnx"

# A single path component that cannot climb out of the repository: no separators, no leading dot, no "..".
# The patterns are anchored as OpenAPI's path-parameter patterns need them.
MODEL_NAME_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MODEL_NAME_RULE = "1-128 letters, digits, '_', '-' or '.', starting with a letter or digit, without '..'"
VERSION_PATTERN = r"^[0-9]{1,18}$"
_MODEL_NAME, _VERSION = re.compile(MODEL_NAME_PATTERN), re.compile(VERSION_PATTERN)


def is_model_name(name: object) -> bool:
    """Whether ``name`` can name a model folder (and so a URL segment) safely."""
    return isinstance(name, str) and _MODEL_NAME.fullmatch(name) is not None


def is_version(name: str) -> bool:
    """Whether a folder name under a model (or a version in a URL) is a version: decimal digits."""
    return _VERSION.fullmatch(name) is not None
