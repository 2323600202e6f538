"""Contract B: keys of the model card that the exporter writes into ONNX ``metadata_props`` and the service reads.

Every value is a string; structured values are JSON.
"""
from __future__ import annotations

PREFIX = "lutnet."

MODEL_NAME = PREFIX + "model_name"
MODEL_VERSION = PREFIX + "model_version"
TASK = PREFIX + "task"  # "classification" | "regression"
INPUT_NAME = PREFIX + "input_name"
INPUT_SHAPE = PREFIX + "input_shape"  # JSON list, -1 for the batch dimension
OUTPUT_NAME = PREFIX + "output_name"
OUTPUT_SHAPE = PREFIX + "output_shape"  # JSON list, -1 for the batch dimension
LABELS = PREFIX + "labels"  # JSON list of strings (classification)
FAMILY = PREFIX + "family"  # "mlp" | "convnet"
ACTIVATION = PREFIX + "activation"  # "lut" | "relu" | "gelu"
LUT_MODE = PREFIX + "lut_mode"  # exported lookup mode: "linear" | "nearest" (absent for baselines)
LUT_BINS = PREFIX + "lut_bins"  # exported bins K (absent for baselines)
LUT_EXTRAPOLATE = PREFIX + "lut_extrapolate"
MERGE_MAX_ERROR = PREFIX + "merge_max_error"  # max |fused - reference| measured by verification, relative to output scale
SOURCE_SHA256 = PREFIX + "source_sha256"  # sha256 of the checkpoint's model.safetensors
TRAINING_METRICS = PREFIX + "training_metrics"  # JSON object
LUTNET_VERSION = PREFIX + "version"
# Training ranges (lutnet.ranges), absent from models exported before them: JSON {"percentiles": [0.5, 99.5], "lo": [...], "hi": [...]}
# with one value per element of a row, and a JSON list with one {"lo": [...], "hi": [...], "knots": [[...], ...]} per LUT layer.
INPUT_RANGE = PREFIX + "input_range"
LUT_TABLES = PREFIX + "lut_tables"
# JSON list: per LUT layer, the saturation of the monitor graph on the data the model was exported with (its level before any drift).
SATURATION_BASELINE = PREFIX + "lut_saturation_baseline"
# The output of the monitor graph (lutnet.repository.MONITOR_FILE): per LUT layer, the fraction of pre-activations outside its tables.
SATURATION_OUTPUT = "lut_saturation"

# int8 exports only: JSON {"scheme", "weights", "activations", "calibration": {"source", "rows", "sha256"},
# "evaluation": {"rows", "metric", "float", "int8", "change", "class_agreement"}, "exact"} (lutnet.export.quantize).
QUANTIZATION = PREFIX + "quantization"

DEFAULT_INPUT_NAME = "input"
DEFAULT_OUTPUT_NAME = "output"
