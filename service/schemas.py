"""Pydantic models that document the HTTP bodies in OpenAPI; the hot routes parse bytes by hand and never build these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


class ErrorBody(BaseModel):
    error: str = Field(description="What was expected and what was got.")


class InferInput(BaseModel):
    name: str = Field(description="Input name from the model metadata, e.g. 'input'.")
    shape: list[int] = Field(description="Tensor shape, batch first, e.g. [1, 64].")
    datatype: Datatype = Field(description="Element type; other numeric types are cast to the model's when no value changes, else 400.")
    parameters: dict[str, Any] | None = Field(None, description="'binary_data_size': bytes of this tensor in the binary part of the body (then omit 'data').")
    data: list[Any] | None = Field(None, description="Values in row-major order, flat or nested.")


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="'binary_data': true to return this output as raw little-endian bytes.")


class InferRequest(BaseModel):
    """v2 inference request. With the binary tensor data extension the JSON is followed by raw bytes and the
    'Inference-Header-Content-Length' header gives the JSON length; no Content-Type is needed."""

    id: str | None = Field(None, description="Echoed in the response.")
    parameters: dict[str, Any] | None = Field(None, description="'binary_data_output': true to return every output as raw bytes.")
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = Field(None, description="Outputs to return (all when omitted).")


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(None, description="'binary_data_size' when the output is in the binary part.")
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class PredictRequest(BaseModel):
    instances: list[list[Any]] = Field(description="Rows of input values, each flat or nested with the model's row shape.")


class ClassPrediction(BaseModel):
    label: str
    index: int
    probabilities: list[float] = Field(description="Softmax of the logits, in the order of 'labels'.")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    labels: list[str] | None = Field(None, description="Class names (classification).")
    predictions: list[ClassPrediction] | list[float] | list[list[float]] = Field(description="Per row: class prediction, or value(s) for regression.")


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 marks a free dimension (the batch).")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class RepositoryIndexRequest(BaseModel):
    ready: bool = Field(False, description="Only list versions that are ready.")


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class Duration(BaseModel):
    count: int
    ns: int


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch.")
    inference_count: int = Field(description="Rows inferred.")
    execution_count: int = Field(description="onnxruntime calls (several requests share one when batched).")
    inference_stats: dict[str, Duration] = Field(description="success, fail, queue, compute_input (decode), compute_infer, compute_output (encode).")
    batch_stats: list[dict[str, Any]]
    recent_latency: dict[str, float | int | None] = Field(description="p50/p95/p99 end-to-end milliseconds over the recent window.")
    input_range: dict[str, Any] | None = Field(
        None,
        description="Rows checked against the card's training range, rows with any feature outside it, the recent fraction, and per "
        "feature how often it was below or above (most often first); null for a model without a range.",
    )
    lut_saturation: dict[str, Any] | None = Field(
        None, description="Per LUT layer, the share of pre-activations outside its tables in the recent sampled requests; null when not sampled."
    )


class Statistics(BaseModel):
    model_stats: list[ModelStatistics]


class ActivationCurve(BaseModel):
    channel: int
    lo: float = Field(description="Start of the channel's table range: where it was trained.")
    hi: float = Field(description="End of the channel's table range.")
    x: list[float] = Field(description="Pre-activation values, over the range and a margin on each side (extrapolation).")
    y: list[float] = Field(description="The learned activation at each x.")


class LayerCurves(BaseModel):
    layer: int
    channels: int = Field(description="Channels of the layer (1 for a table shared by all).")
    bins: int
    curves: list[ActivationCurve] = Field(description="A sample of channels, evenly spread.")


class ActivationCurves(BaseModel):
    name: str
    version: str
    mode: str
    extrapolate: str
    layers: list[LayerCurves] = Field(description="Every LUT layer; empty for a model whose card has no tables.")
