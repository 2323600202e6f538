"""config.pbtxt: what the server reads from it and how its batching fields combine with settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lutnet.service.config import BatchingPolicy, ModelConfig
from lutnet.service.errors import ModelLoadError
from lutnet.service.settings import Settings

TRITON_CONFIG = """
name: "digits"   # written by lutnet export
platform: "onnxruntime_onnx"
max_batch_size: 256
input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "output", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] default_queue_policy { timeout_action: REJECT } }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


@pytest.mark.parametrize("text", ["a { b: 1", "max_batch_size: ", "max_batch_size: x", "max_batch_size: 1.5"])
def test_malformed_config_is_a_load_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.pbtxt").write_text(text)
    with pytest.raises(ModelLoadError, match="config.pbtxt: expected protobuf text of Triton's ModelConfig, got 1:"):
        ModelConfig.read(tmp_path)


def test_config_fields_and_their_absence(tmp_path: Path) -> None:
    assert ModelConfig.read(tmp_path) == ModelConfig()
    (tmp_path / "config.pbtxt").write_text(TRITON_CONFIG)
    assert ModelConfig.read(tmp_path) == ModelConfig(max_batch_size=256, max_queue_delay_us=100)
    (tmp_path / "config.pbtxt").write_text("max_batch_size: -4")
    with pytest.raises(ModelLoadError, match="a non-negative integer"):
        ModelConfig.read(tmp_path)


def test_explicit_settings_win_over_the_config_and_the_config_over_defaults() -> None:
    config = ModelConfig(max_batch_size=256, max_queue_delay_us=100)
    from_config = BatchingPolicy.resolve(Settings(batching=True), config)
    assert (from_config.enabled, from_config.max_batch_size, from_config.max_queue_delay_us) == (True, 256, 100)
    explicit = BatchingPolicy.resolve(Settings(batching=True, max_batch_size=16, max_queue_delay_us=0), config)
    assert (explicit.enabled, explicit.max_batch_size, explicit.max_queue_delay_us) == (True, 16, 0)
    defaults = BatchingPolicy.resolve(Settings(), ModelConfig(max_batch_size=0))
    assert (defaults.enabled, defaults.max_batch_size) == (Settings().batching, Settings().max_batch_size)
