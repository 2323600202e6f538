"""config.pbtxt through protobuf's text format: lutnet's schema is Triton's, field for field."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import text_format

from lutnet import model_config

TRITON_CONFIG = """
name: "digits"   # a comment
platform: "onnxruntime_onnx"
max_batch_size: 256
version_policy: { latest: { num_versions: 2 } }
input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]
output [ { name: "output", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] default_queue_policy { timeout_action: REJECT } }
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
model_warmup [ { name: "zeros" batch_size: 1 inputs { key: "input" value: { data_type: TYPE_FP32 dims: [ 64 ] zero_data: true } } } ]
"""


def triton_schema() -> ModuleType:
    """Triton's own compiled model_config.proto, as tritonclient ships it (loaded without its gRPC package)."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or spec.origin is None:
        pytest.skip("tritonclient (dev extra) is not installed")
    path = Path(spec.origin).parent / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def fields(descriptor) -> dict[str, tuple[int, int, bool, str]]:
    def type_name(f) -> str:
        target = f.message_type or f.enum_type
        return target.full_name if target else ""

    return {f.name: (f.number, f.type, f.is_repeated, type_name(f)) for f in descriptor.fields}


def test_every_declared_field_has_tritons_number_and_type() -> None:
    ours, theirs = model_config.ModelConfig.DESCRIPTOR.file, triton_schema().DESCRIPTOR
    pending = list(ours.message_types_by_name.values())
    while pending:
        message = pending.pop()
        triton = theirs.pool.FindMessageTypeByName(message.full_name)
        assert fields(message).items() <= fields(triton).items(), message.full_name
        pending.extend(message.nested_types)
    for enum in [*ours.enum_types_by_name.values(), *(e for m in ours.message_types_by_name.values() for e in m.enum_types)]:
        triton_enum = theirs.pool.FindEnumTypeByName(enum.full_name)
        assert [(v.name, v.number) for v in enum.values] == [(v.name, v.number) for v in triton_enum.values][: len(enum.values)]


def test_a_triton_config_reads_the_same_under_both_schemas() -> None:
    ours = model_config.parse(TRITON_CONFIG)
    schema = triton_schema()
    theirs = text_format.Parse(TRITON_CONFIG, schema.ModelConfig())
    assert schema.ModelConfig.FromString(ours.SerializeToString()) == theirs
    assert (ours.max_batch_size, ours.dynamic_batching.max_queue_delay_microseconds) == (256, 100)
    assert list(ours.dynamic_batching.preferred_batch_size) == [4, 8]


def test_what_lutnet_writes_is_a_valid_triton_config() -> None:
    text = model_config.to_text(model_config.onnx_model("digits", [64], [10], 1024, "input", "output"))
    theirs = text_format.Parse(text, triton_schema().ModelConfig())
    assert (theirs.name, theirs.platform, theirs.max_batch_size, list(theirs.input[0].dims)) == ("digits", "onnxruntime_onnx", 1024, [64])
    assert theirs.HasField("dynamic_batching")


def test_fields_outside_the_schema_are_skipped_and_absent_ones_read_as_absent() -> None:
    config = model_config.parse('name: "m"\nmodel_transaction_policy { decoupled: false }\noptimization { priority: PRIORITY_MAX }\n')
    assert config.name == "m" and not config.HasField("max_batch_size") and not config.HasField("dynamic_batching")


@pytest.mark.parametrize(("text", "where"), [("a { b: 1", "1:"), ("max_batch_size: ", "1:"), ("max_batch_size: 1.5", "1:"),
                                             ('name: "m"\ninput [ { data_type: TYPE_NOPE } ]', "2:")])
def test_malformed_text_says_where(text: str, where: str) -> None:
    with pytest.raises(model_config.ModelConfigError, match=f"expected protobuf text of Triton's ModelConfig, got {where}"):
        model_config.parse(text, "config.pbtxt")
