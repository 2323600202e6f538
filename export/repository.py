"""The model repository in Triton's layout: ``DIR/NAME/V/model.onnx`` beside ``DIR/NAME/config.pbtxt``."""
from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import TensorProto

from lutnet import metadata, model_config
from lutnet.atomic import staging_directory, write_text_atomic
from lutnet.errors import LutnetError
from lutnet.repository import CONFIG_FILE, MODEL_FILE, MODEL_NAME_RULE, is_model_name, is_version

DEFAULT_MAX_BATCH_SIZE = 1024
TRITON_TYPES = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.DOUBLE: "TYPE_FP64", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.INT64: "TYPE_INT64",
                TensorProto.INT32: "TYPE_INT32", TensorProto.INT8: "TYPE_INT8", TensorProto.UINT8: "TYPE_UINT8", TensorProto.BOOL: "TYPE_BOOL"}


class RepositoryError(LutnetError):
    """A model name, version or repository folder that cannot take the model."""


def check_name(name: str) -> str:
    if not is_model_name(name):
        raise RepositoryError("model name", expected=MODEL_NAME_RULE, got=repr(name))
    return name


def versions(model_dir: Path) -> list[int]:
    """Version numbers present under ``model_dir`` (numeric folder names), ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and is_version(p.name))


def next_version(model_dir: Path) -> int:
    return max(versions(model_dir), default=0) + 1


def config_pbtxt(name: str, input_dims: list[int], output_dims: list[int], max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> str:
    """Triton model configuration; dims exclude the batch dimension, which ``max_batch_size`` implies."""
    config = model_config.onnx_model(name, input_dims, output_dims, max_batch_size, metadata.DEFAULT_INPUT_NAME, metadata.DEFAULT_OUTPUT_NAME)
    return model_config.to_text(config)


def config_pbtxt_for(name: str, proto: onnx.ModelProto, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> str:
    """Triton model configuration of an ONNX model's every input and output (batch dimension first, dropped from the dims)."""
    def tensors(values: Sequence[onnx.ValueInfoProto]) -> list[tuple[str, str, list[int]]]:
        return [(v.name, TRITON_TYPES[v.type.tensor_type.elem_type], _dims(v)[1:]) for v in values]

    unknown = [v.name for v in (*proto.graph.input, *proto.graph.output) if v.type.tensor_type.elem_type not in TRITON_TYPES]
    if unknown:
        raise RepositoryError("tensor types of the model", expected=f"ONNX types with a Triton name ({sorted(TRITON_TYPES.values())})", got=unknown)
    config = model_config.onnx_model_of(name, tensors(proto.graph.input), tensors(proto.graph.output), max_batch_size)
    return model_config.to_text(config)


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def resolve_version(repository: str | os.PathLike[str], name: str, version: int | None) -> int:
    """The version to write: ``version`` if free, else the next free number; an existing one is an error."""
    model_dir = Path(repository) / check_name(name)
    if version is None:
        return next_version(model_dir)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RepositoryError("model version", expected="a positive integer", got=repr(version))
    if (model_dir / str(version)).exists():
        raise RepositoryError(f"version {version} of model {name!r}", expected="a version that does not exist yet", got=f"{model_dir / str(version)} exists")
    return version


def write_model(
    repository: str | os.PathLike[str], name: str, version: int, model: bytes, config: str, extra: dict[str, bytes] | None = None
) -> Path:
    """Write ``NAME/V/model.onnx`` (with ``extra`` files beside it) and ``NAME/config.pbtxt`` atomically; returns the model file's path.

    The version folder appears complete or not at all; if ``config.pbtxt`` cannot be written the new
    version is removed again. An existing ``config.pbtxt`` that describes other inputs or outputs is an error,
    since Triton applies one configuration to every version.
    """
    model_dir = Path(repository) / check_name(name)
    config_path = model_dir / CONFIG_FILE
    if config_path.exists() and config_path.read_text(encoding="utf-8") != config:
        raise RepositoryError(f"{config_path}", expected="the configuration of the new version (same inputs, outputs, batch size)", got="a different one")
    final = model_dir / str(version)
    created = not model_dir.exists()
    try:
        with staging_directory(final, replace=False) as staging:
            (staging / MODEL_FILE).write_bytes(model)
            for file_name, content in (extra or {}).items():
                (staging / file_name).write_bytes(content)
        try:
            write_text_atomic(config_path, config)
        except BaseException:
            shutil.rmtree(final)
            raise
    except OSError as exc:
        if created:
            shutil.rmtree(model_dir, ignore_errors=True)
        if isinstance(exc, FileExistsError):
            raise RepositoryError(f"version {version} of model {name!r}", expected="a version that does not exist yet", got=f"{final} exists") from None
        raise RepositoryError(f"repository {repository}", expected="a writable folder", got=f"{exc.strerror or exc}") from None
    return final / MODEL_FILE
