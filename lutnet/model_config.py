"""Triton's model configuration (``config.pbtxt``) read and written with protobuf's own text format.

The schema below declares the part of Triton's ``inference.ModelConfig`` that lutnet reads or writes,
with Triton's field numbers and types; text_format skips every other field of a Triton config, so
configs written for Triton load here unchanged. protobuf comes with onnx and onnxruntime, so the
export and serve extras already have it.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from lutnet.errors import LutnetError

_F = descriptor_pb2.FieldDescriptorProto
PLATFORM = "onnxruntime_onnx"
_SCALARS = {"string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
            "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64}
_ENUMS = {
    "DataType": ["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16",
                 "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"],
    "ModelInput.Format": ["FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"],
    "ModelInstanceGroup.Kind": ["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"],
    "ModelQueuePolicy.TimeoutAction": ["REJECT", "DELAY"],
}
# message -> (field, number, type); "repeated T" and "map<K, V>" as in a .proto file. Triton's numbers and types.
_MESSAGES = {
    "ModelTensorReshape": [("shape", 1, "repeated int64")],
    "ModelInput": [("name", 1, "string"), ("data_type", 2, "DataType"), ("format", 3, "ModelInput.Format"), ("dims", 4, "repeated int64"),
                   ("reshape", 5, "ModelTensorReshape"), ("is_shape_tensor", 6, "bool"), ("allow_ragged_batch", 7, "bool"),
                   ("optional", 8, "bool")],
    "ModelOutput": [("name", 1, "string"), ("data_type", 2, "DataType"), ("dims", 3, "repeated int64"), ("label_filename", 4, "string"),
                    ("reshape", 5, "ModelTensorReshape"), ("is_shape_tensor", 6, "bool")],
    "ModelVersionPolicy.Latest": [("num_versions", 1, "uint32")],
    "ModelVersionPolicy.All": [],
    "ModelVersionPolicy.Specific": [("versions", 1, "repeated int64")],
    "ModelVersionPolicy": [("latest", 1, "ModelVersionPolicy.Latest"), ("all", 2, "ModelVersionPolicy.All"),
                           ("specific", 3, "ModelVersionPolicy.Specific")],
    "ModelInstanceGroup": [("name", 1, "string"), ("count", 2, "int32"), ("gpus", 3, "repeated int32"), ("kind", 4, "ModelInstanceGroup.Kind"),
                           ("profile", 5, "repeated string"), ("passive", 7, "bool"), ("host_policy", 9, "string")],
    "ModelQueuePolicy": [("timeout_action", 1, "ModelQueuePolicy.TimeoutAction"), ("default_timeout_microseconds", 2, "uint64"),
                         ("allow_timeout_override", 3, "bool"), ("max_queue_size", 4, "uint32")],
    "ModelDynamicBatching": [("preferred_batch_size", 1, "repeated int32"), ("max_queue_delay_microseconds", 2, "uint64"),
                             ("preserve_ordering", 3, "bool"), ("priority_levels", 4, "uint64"), ("default_priority_level", 5, "uint64"),
                             ("default_queue_policy", 6, "ModelQueuePolicy"), ("priority_queue_policy", 7, "map<uint64, ModelQueuePolicy>")],
    "ModelParameter": [("string_value", 1, "string")],
    "ModelWarmup.Input": [("data_type", 1, "DataType"), ("dims", 2, "repeated int64"), ("zero_data", 3, "bool"), ("random_data", 4, "bool"),
                          ("input_data_file", 5, "string")],
    "ModelWarmup": [("name", 1, "string"), ("batch_size", 2, "uint32"), ("inputs", 3, "map<string, ModelWarmup.Input>"), ("count", 4, "uint32")],
    "ModelResponseCache": [("enable", 1, "bool")],
    "ModelConfig": [("name", 1, "string"), ("platform", 2, "string"), ("version_policy", 3, "ModelVersionPolicy"), ("max_batch_size", 4, "int32"),
                    ("input", 5, "repeated ModelInput"), ("output", 6, "repeated ModelOutput"), ("instance_group", 7, "repeated ModelInstanceGroup"),
                    ("default_model_filename", 8, "string"), ("cc_model_filenames", 9, "map<string, string>"),
                    ("metric_tags", 10, "map<string, string>"), ("dynamic_batching", 11, "ModelDynamicBatching"),
                    ("parameters", 14, "map<string, ModelParameter>"), ("model_warmup", 16, "repeated ModelWarmup"), ("backend", 17, "string"),
                    ("response_cache", 24, "ModelResponseCache"), ("runtime", 25, "string")],
}


class ModelConfigError(LutnetError):
    """A ``config.pbtxt`` that is not valid protobuf text for Triton's model configuration."""


def _schema() -> descriptor_pb2.FileDescriptorProto:
    """The tables above as a protobuf file descriptor (package ``inference``, nested types inside their parents, as Triton's).

    Declared as proto2 (Triton's is proto3; the text format is the same) so that a field the text leaves
    out reads as absent rather than as zero.
    """
    schema = descriptor_pb2.FileDescriptorProto(name="lutnet/triton_model_config.proto", package="inference", syntax="proto2")
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    for path in sorted(_MESSAGES, key=lambda p: p.count(".")):
        parent, _, name = path.rpartition(".")
        messages[path] = (messages[parent].nested_type if parent else schema.message_type).add(name=name)
    for path, values in _ENUMS.items():
        parent, _, name = path.rpartition(".")
        enum = (messages[parent].enum_type if parent else schema.enum_type).add(name=name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for path, fields in _MESSAGES.items():
        for name, number, kind in fields:
            _add_field(messages[path], name, number, kind)
    return schema


def _add_field(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: str) -> None:
    label = _F.LABEL_OPTIONAL
    if kind.startswith("repeated "):
        label, kind = _F.LABEL_REPEATED, kind.removeprefix("repeated ")
    elif kind.startswith("map<"):
        key, value = (part.strip() for part in kind[4:-1].split(","))
        entry = message.nested_type.add(name="".join(w.title() for w in name.split("_")) + "Entry")
        entry.options.map_entry = True
        _add_field(entry, "key", 1, key)
        _add_field(entry, "value", 2, value)
        label, kind = _F.LABEL_REPEATED, f"{message.name}.{entry.name}"
    field = message.field.add(name=name, number=number, label=label)
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    else:
        field.type = _F.TYPE_ENUM if kind in _ENUMS else _F.TYPE_MESSAGE
        field.type_name = f".inference.{kind}"


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_schema())
ModelConfig: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("inference.ModelConfig"))


def parse(text: str, source: str = "config.pbtxt") -> Any:
    """The ``ModelConfig`` message that ``text`` describes; fields outside lutnet's schema are skipped."""
    try:
        return text_format.Parse(text, ModelConfig(), allow_unknown_field=True)
    except text_format.ParseError as exc:
        raise ModelConfigError(source, expected="protobuf text of Triton's ModelConfig", got=str(exc)) from None


def onnx_model(name: str, input_dims: list[int], output_dims: list[int], max_batch_size: int,
               input_name: str, output_name: str) -> Any:
    """The configuration of an ONNX model with one float32 input and output and a batch dimension, dynamic batching on (for Triton)."""
    return onnx_model_of(name, [(input_name, "TYPE_FP32", input_dims)], [(output_name, "TYPE_FP32", output_dims)], max_batch_size)


def onnx_model_of(name: str, inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]], max_batch_size: int) -> Any:
    """The configuration of an ONNX model with a batch dimension, dynamic batching on; tensors as ``(name, TYPE_*, dims)``."""
    config = ModelConfig(name=name, platform=PLATFORM, max_batch_size=max_batch_size)
    for tensor_name, data_type, dims in inputs:
        config.input.add(name=tensor_name, data_type=data_type, dims=dims)
    for tensor_name, data_type, dims in outputs:
        config.output.add(name=tensor_name, data_type=data_type, dims=dims)
    config.dynamic_batching.SetInParent()
    return config


def to_text(config: Any) -> str:
    return text_format.MessageToString(config)
