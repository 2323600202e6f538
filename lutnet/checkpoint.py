"""Contract A: the checkpoint directory (``config.json`` + ``model.safetensors``), readable with numpy alone.

Tensor names (every array float32 unless noted):

- ``hidden.{i}.weight``: ``[out, in]`` for ``mlp``, ``[out, in, k, k]`` for ``convnet``; ``hidden.{i}.bias``: ``[out]``
- ``act.{i}.table``: ``[C or 1, K+1]``, ``act.{i}.lo`` / ``act.{i}.hi``: ``[C or 1]`` (only for ``lut`` activations)
- ``head.weight``: ``[num_outputs, head_in]``, ``head.bias``: ``[num_outputs]``

``config.json`` holds the format version, the model spec, the task, label names, the input
standardization (per feature for ``mlp``, per input channel for ``convnet``), the target
standardization for regression, the data set and split, metrics, training arguments and versions, and (from
the trainer, optional for older checkpoints) each input feature's training range (``lutnet.ranges``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lutnet import tensorfile
from lutnet.atomic import write_bytes_atomic, write_text_atomic
from lutnet.errors import CheckpointError
from lutnet.spec import TASKS, ModelSpec

FORMAT = "lutnet-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSOR_FILE = "model.safetensors"
# Written by the trainer beside config.json: the raw test inputs ``X`` and targets ``y``, which export verifies on.
TEST_SPLIT_FILE = "test_split.safetensors"
CALIBRATION_FILE = "calibration.safetensors"  # a sample of the raw training inputs ``X``: int8 export calibrates on it


@dataclass
class Checkpoint:
    """A trained model with its weights and tables as separate tensors, plus everything needed to serve it."""

    spec: ModelSpec
    tensors: dict[str, np.ndarray]
    task: str = "classification"
    labels: list[str] = field(default_factory=list)
    input_mean: np.ndarray | None = None
    input_std: np.ndarray | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)  # dataset, metrics, training, versions: free-form JSON

    def __post_init__(self) -> None:
        width = self.spec.input_shape[0]
        self.input_mean = np.zeros(width) if self.input_mean is None else np.asarray(self.input_mean, dtype=np.float64)
        self.input_std = np.ones(width) if self.input_std is None else np.asarray(self.input_std, dtype=np.float64)

    def validate(self) -> None:
        """Check every field and tensor against the spec; errors name the offending field or tensor."""
        self.spec.validate()
        _require(self.task in TASKS, "task", f"one of {list(TASKS)}", self.task)
        if self.task == "classification":
            _require(len(self.labels) == self.spec.num_outputs, "labels", f"{self.spec.num_outputs} label names", len(self.labels))
        width = self.spec.input_shape[0]
        for name, values in (("normalization.mean", self.input_mean), ("normalization.std", self.input_std)):
            _require(values.shape == (width,), name, f"{width} numbers", list(values.shape))
            _require(bool(np.all(np.isfinite(values))), name, "finite numbers", "NaN or Inf")
        _require(bool(np.all(self.input_std > 0)), "normalization.std", "positive numbers", float(self.input_std.min()))
        _require(np.isfinite(self.target_std) and self.target_std > 0, "target_normalization.std", "a positive number", self.target_std)
        expected = expected_tensor_shapes(self.spec)
        missing = sorted(set(expected) - set(self.tensors))
        extra = sorted(set(self.tensors) - set(expected))
        _require(not missing and not extra, "tensors", f"exactly {sorted(expected)}", f"missing {missing}, unexpected {extra}")
        for name, shape in expected.items():
            _require(tuple(self.tensors[name].shape) == shape, f"tensor {name}", f"shape {list(shape)}", list(self.tensors[name].shape))
            _require(bool(np.all(np.isfinite(self.tensors[name]))), f"tensor {name}", "finite values", "NaN or Inf")
        for i in range(len(self.spec.hidden)) if self.spec.activation == "lut" else ():
            lo, hi = self.tensors[f"act.{i}.lo"], self.tensors[f"act.{i}.hi"]
            _require(bool(np.all(hi > lo)), f"tensor act.{i}.hi", "hi > lo in every channel", "hi <= lo")

    def to_config(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.spec.to_dict(),
            "task": self.task,
            "labels": list(self.labels),
            "normalization": {"mean": self.input_mean.tolist(), "std": self.input_std.tolist()},
            "target_normalization": {"mean": float(self.target_mean), "std": float(self.target_std)},
            **self.info,
        }

    @classmethod
    def from_config(cls, config: Any, tensors: dict[str, np.ndarray]) -> Checkpoint:
        _require(isinstance(config, dict), "config.json", "a JSON object", type(config).__name__)
        _require(config.get("format") == FORMAT, "format", repr(FORMAT), config.get("format"))
        _require(config.get("format_version") == FORMAT_VERSION, "format_version", FORMAT_VERSION, config.get("format_version"))
        for key in ("model", "task", "normalization"):
            _require(key in config, key, "a value", "nothing")
        norm, target = config["normalization"], config.get("target_normalization") or {}
        _require(isinstance(norm, dict) and {"mean", "std"} <= set(norm), "normalization", "an object with mean and std", norm)
        _require(isinstance(target, dict), "target_normalization", "an object with mean and std", target)
        labels = config.get("labels", [])
        _require(isinstance(labels, list) and all(isinstance(s, str) for s in labels), "labels", "a list of strings", labels)
        known = {"format", "format_version", "model", "task", "labels", "normalization", "target_normalization"}
        try:
            checkpoint = cls(
                spec=ModelSpec.from_dict(config["model"]),
                tensors=tensors,
                task=config["task"],
                labels=labels,
                input_mean=np.asarray(norm["mean"], dtype=np.float64),
                input_std=np.asarray(norm["std"], dtype=np.float64),
                target_mean=float(target.get("mean", 0.0)),
                target_std=float(target.get("std", 1.0)),
                info={k: v for k, v in config.items() if k not in known},
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError("normalization", expected="lists of numbers", got=str(exc)) from None
        checkpoint.validate()
        return checkpoint


def expected_tensor_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor name the spec needs with its shape (table rows follow ``spec.lut.shared``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    fan_in = spec.input_shape[0]
    kernel = (spec.kernel_size, spec.kernel_size) if spec.family == "convnet" else ()
    for i, width in enumerate(spec.hidden):
        shapes[f"hidden.{i}.weight"] = (width, fan_in, *kernel)
        shapes[f"hidden.{i}.bias"] = (width,)
        if spec.activation == "lut":
            rows = 1 if spec.lut.shared else width
            shapes[f"act.{i}.table"] = (rows, spec.lut.bins + 1)
            shapes[f"act.{i}.lo"] = (rows,)
            shapes[f"act.{i}.hi"] = (rows,)
        fan_in = width
    shapes["head.weight"] = (spec.num_outputs, spec.head_in_features())
    shapes["head.bias"] = (spec.num_outputs,)
    return shapes


def read_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint:
    """Load and validate a checkpoint directory; nothing is unpickled."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError("checkpoint directory", expected=f"{directory} to be a directory with {CONFIG_FILE} and {TENSOR_FILE}", got="no such directory")
    config_path = directory / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{config_path}", expected="a checkpoint config file", got="no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path}", expected="valid JSON", got=str(exc)) from None
    return Checkpoint.from_config(config, tensorfile.load_file(directory / TENSOR_FILE))


def write_checkpoint(checkpoint: Checkpoint, directory: str | os.PathLike[str]) -> None:
    """Validate, then write ``model.safetensors`` and ``config.json`` (each atomically, tensors first)."""
    checkpoint.validate()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.asarray(value, dtype=np.float32) for name, value in checkpoint.tensors.items()}
    # Serialize both before touching the disk, so a bad value fails with nothing written.
    blob = tensorfile.save(tensors, metadata={"format": f"{FORMAT}/{FORMAT_VERSION}"})
    text = json.dumps(checkpoint.to_config(), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(directory / TENSOR_FILE, blob)
    write_text_atomic(directory / CONFIG_FILE, text)


def _require(ok: bool, name: str, expected: object, got: object) -> None:
    if not ok:
        raise CheckpointError(f"invalid {name}", expected=expected, got=repr(got))
