"""Small ONNX models for the service tests, built with the onnx helper, and a repository writer in Triton layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lutnet import metadata


def gemm_model(weight: np.ndarray, bias: np.ndarray, card: dict[str, object] | None = None, *, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """``output = input @ weight.T + bias`` with a free batch dimension, and ``card`` in ``metadata_props``."""
    outputs, inputs = weight.shape
    numpy_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "weight", "bias"], ["output"], transB=1)],
        "gemm",
        [helper.make_tensor_value_info("input", dtype, ["batch", inputs])],
        [helper.make_tensor_value_info("output", dtype, ["batch", outputs])],
        [numpy_helper.from_array(weight.astype(numpy_dtype), "weight"), numpy_helper.from_array(bias.astype(numpy_dtype), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    for key, value in (card or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    return model


def card(task: str, inputs: int, outputs: int, labels: list[str] | None = None, name: str = "model") -> dict[str, object]:
    """A model card with the keys of ``lutnet.metadata`` as the exporter writes them."""
    values: dict[str, object] = {
        metadata.MODEL_NAME: name,
        metadata.MODEL_VERSION: "1",
        metadata.TASK: task,
        metadata.INPUT_NAME: "input",
        metadata.INPUT_SHAPE: [-1, inputs],
        metadata.OUTPUT_NAME: "output",
        metadata.OUTPUT_SHAPE: [-1, outputs],
        metadata.FAMILY: "mlp",
        metadata.ACTIVATION: "lut",
    }
    if labels is not None:
        values[metadata.LABELS] = labels
    return values


def write_model(repository: Path, name: str, version: int, model: onnx.ModelProto | bytes, config: str | None = None) -> Path:
    """Write ``repository/name/version/model.onnx`` (and ``config.pbtxt`` when given); returns the model file."""
    path = repository / name / str(version) / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    if config is not None:
        (repository / name / "config.pbtxt").write_text(config)
    return path


def classifier(seed: int = 0, inputs: int = 64, outputs: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of a digits-shaped linear classifier."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(outputs, inputs)).astype(np.float32) / 8, rng.normal(size=outputs).astype(np.float32)


def build_repository(repository: Path) -> Path:
    """digits (classification, 64 -> 10, two versions), housing (regression 8 -> 1, batching config)."""
    for version, seed in ((1, 1), (2, 2)):
        weight, bias = classifier(seed)
        write_model(repository, "digits", version, gemm_model(weight, bias, card("classification", 64, 10, [str(i) for i in range(10)], "digits")))
    weight, bias = classifier(3, inputs=8, outputs=1)
    config = 'name: "housing"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 32\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n'
    write_model(repository, "housing", 1, gemm_model(weight, bias, card("regression", 8, 1, name="housing")), config)
    return repository
