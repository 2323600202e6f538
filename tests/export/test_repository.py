"""The Triton-layout model repository: layout, config.pbtxt, versions, names, atomic writes."""
from __future__ import annotations

from pathlib import Path

import pytest

from lutnet import model_config
from lutnet.export.repository import RepositoryError, check_name, config_pbtxt, resolve_version, write_model

TYPE_FP32 = model_config.ModelConfig.DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_name["TYPE_FP32"].number

CONFIG = config_pbtxt("digits", [64], [10], max_batch_size=8)


def test_config_pbtxt_is_triton_onnxruntime_config() -> None:
    config = model_config.parse(config_pbtxt("mnist", [1, 28, 28], [10]))
    assert (config.name, config.platform, config.max_batch_size) == ("mnist", "onnxruntime_onnx", 1024)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("input", TYPE_FP32, [1, 28, 28])]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("output", TYPE_FP32, [10])]
    assert config.HasField("dynamic_batching") and not config.dynamic_batching.HasField("max_queue_delay_microseconds")


def test_versions_count_up_and_never_overwrite(tmp_path: Path) -> None:
    assert resolve_version(tmp_path, "digits", None) == 1
    path = write_model(tmp_path, "digits", 1, b"one", CONFIG)
    assert path == tmp_path / "digits" / "1" / "model.onnx" and path.read_bytes() == b"one"
    assert (tmp_path / "digits" / "config.pbtxt").read_text() == CONFIG
    assert resolve_version(tmp_path, "digits", None) == 2
    write_model(tmp_path, "digits", 5, b"five", CONFIG)
    assert resolve_version(tmp_path, "digits", None) == 6
    with pytest.raises(RepositoryError, match="version 5 of model 'digits': expected a version that does not exist yet"):
        resolve_version(tmp_path, "digits", 5)
    with pytest.raises(RepositoryError, match="does not exist yet"):
        write_model(tmp_path, "digits", 1, b"again", CONFIG)
    assert path.read_bytes() == b"one"


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden", "", "x" * 200, "sp ace", "/abs"])
def test_names_that_could_leave_the_repository_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="model name"):
        check_name(name)
    with pytest.raises(RepositoryError):
        write_model(tmp_path, name, 1, b"x", CONFIG)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", [0, -1, True])
def test_bad_versions_are_refused(version: int, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="model version"):
        resolve_version(tmp_path, "digits", version)


def test_a_different_config_for_a_new_version_is_refused(tmp_path: Path) -> None:
    write_model(tmp_path, "digits", 1, b"one", CONFIG)
    with pytest.raises(RepositoryError, match="config.pbtxt"):
        write_model(tmp_path, "digits", 2, b"two", config_pbtxt("digits", [32], [10], max_batch_size=8))
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["1", "config.pbtxt"]


def test_unwritable_repository_leaves_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(RepositoryError, match="writable folder"):
        write_model(blocked, "digits", 1, b"x", CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
