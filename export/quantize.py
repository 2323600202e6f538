"""int8 export: calibrate a fused model on data, build its integer model and the standard-ONNX int8 graph, verify both.

The integer model (``lutnet.quantized``) replaces every activation layer by one uint8 table per channel that maps
the requantized pre-activation code to the next layer's input code. Building it, layer by layer on the
calibration data (each layer calibrated on the codes the quantized layers before it actually produce):

1. The layer reads codes ``a`` with real values ``scale[f] * (a[f] - zero) + centre[f]``. Its float weights
   times ``scale`` are quantized symmetrically per output channel to ``WEIGHT_LIMIT``, and the centres plus the
   bias become a per-channel constant ``beta`` outside the integer product.
2. The int32 sums on the calibration codes give each channel's range; their requantization scale comes from it
   (one zero point for the layer, chosen so that the channels together lose the least resolution).
3. The table evaluates the float activation at the real value of each of the 256 pre-activation codes
   (``beta`` included) and quantizes it for the next layer: per channel around the centre of its calibrated
   output range where a matrix product reads it, per channel around zero where a convolution does (its
   padding is the code of a real zero).

The graph: ``[Sub] -> Mul -> QuantizeLinear`` at the input; per hidden layer ``QLinearMatMul`` (or ``QLinearConv``)
``-> Cast -> GatherElements`` on a ``[256, C]`` table (a convolution's codes move channels last around it)
``[-> MaxPool]``; the head ``MatMulInteger -> DequantizeLinear``, its int32 bias the dequantization's zero point
(negated), so the model takes and gives float32 as the float export does. The input's ``Sub`` is there only where
the codes need it: a dense first layer reads raw values when every feature's range holds 0 (images, counts,
standardized features), and their mean then joins the bias like any centre.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from lutnet import __version__, metadata, quantized
from lutnet.errors import LutnetError
from lutnet.lut import activation_function as activation_named
from lutnet.export.fold import FusedLayer, FusedModel, SegmentTable
from lutnet.export.graph import DEFAULT_OPSET, GraphBuilder, check_opset
from lutnet.export.lookups import LookupSettings, graph_constants, is_placeholder, placeholder_settings
from lutnet.quantized import CODES, WEIGHT_LIMIT, QuantizedHead, QuantizedInput, QuantizedLayer, QuantizedModel

MAX_ACCURACY_DROP = 0.005  # classification: accuracy lost to int8 on the evaluation data, at most (0.5 points)
MAX_RMSE_INCREASE = 0.05  # regression: relative RMSE increase from int8, at most
MIN_CALIBRATION_ROWS = 16
MIDDLE = 128  # zero point of codes centred per channel
# A dense first layer reads raw inputs (no Sub in the graph) when no feature loses more than this much
# resolution, in bits, against codes centred on its own range.
RAW_INPUT_MAX_LOSS = 0.25
INT32_LIMIT = 2**31 - 1


class QuantizationError(LutnetError):
    """A model, data set or result that int8 export cannot accept; nothing is written."""


# --- the float model the integer one approximates --------------------------------------------------------

def segment_values(table: SegmentTable, v: np.ndarray, channel_axis: int = 1) -> np.ndarray:
    """The segment table's activation at coordinates ``v`` (float64), channels on ``channel_axis``."""
    moved = np.moveaxis(np.asarray(v, dtype=np.float64), channel_axis, -1)
    segment = np.clip(np.floor(np.nan_to_num(moved, nan=0.0)), 0, table.segments - 1).astype(np.intp)
    channels = np.arange(table.intercept.shape[1])
    y = table.intercept[segment, channels]
    if table.slope is not None:
        along = np.clip(moved, 0, table.segments - 1) if table.flat_edges else moved
        y = y + along * table.slope[segment, channels]
    return np.moveaxis(y, -1, channel_axis)


def activation_function(layer: FusedLayer) -> Callable[[np.ndarray], np.ndarray]:
    """The layer's activation as a function of its (fused) pre-activation, channels on axis 1."""
    if layer.activation in ("relu", "gelu"):
        return activation_named(layer.activation)
    assert layer.table is not None
    return lambda v: segment_values(layer.table, v)


# --- calibration ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Codes:
    """How the codes a layer reads map to real values: ``scale[f] * (code - zero) + centre[f]`` per feature/channel."""

    scale: np.ndarray
    zero: int
    centre: np.ndarray


def channel_ranges(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) minimum and maximum over every other axis."""
    moved = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
    return moved.min(axis=1), moved.max(axis=1)


def shared_zero(lo: np.ndarray, hi: np.ndarray) -> tuple[int, np.ndarray]:
    """One zero point for all channels and a scale per channel so that code ``zero`` is a real 0 and each range fits.

    Ranges are first widened to contain 0. The zero point minimizes the summed log of the scales, the
    resolution lost over all channels together.
    """
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
    zeros = np.arange(CODES, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        below = np.where(lo < 0, -lo / zeros, 0.0)
        above = np.where(hi > 0, hi / (CODES - 1 - zeros), 0.0)
    scales = np.maximum(below, above)  # (256, C); inf where a range does not fit
    live = np.isfinite(scales).all(axis=1)
    cost = np.where(live, np.log(np.maximum(scales, 1e-300)).sum(axis=1), np.inf)
    zero = int(np.argmin(cost))
    return zero, floor_scales(scales[zero])


def floor_scales(scale: np.ndarray) -> np.ndarray:
    """Scales of constant channels (range 0) become a small positive number: their codes stay at the zero point."""
    positive = scale[scale > 0]
    floor = 1e-6 * positive.max() if positive.size else 1.0
    return np.maximum(scale, floor)


def centred_codes(lo: np.ndarray, hi: np.ndarray) -> Codes:
    """Per-channel codes around the middle of each range (for values a matrix product reads)."""
    return Codes(scale=floor_scales((hi - lo) / (CODES - 2)), zero=MIDDLE, centre=(lo + hi) / 2)


def zero_centred_codes(lo: np.ndarray, hi: np.ndarray) -> Codes:
    zero, scale = shared_zero(lo, hi)
    return Codes(scale=scale, zero=zero, centre=np.zeros_like(scale))


def dense_input_codes(h: np.ndarray, mean: np.ndarray) -> tuple[Codes, int, np.ndarray]:
    """How a dense first layer reads the inputs ``x = h + mean``: raw values where that costs (almost) nothing, else centred.

    Returns how the layer reads the codes, the zero point that writes them (``QuantizeLinear``'s) and the shift the
    input subtracts first. Raw codes (``rint(x * multiplier) + written zero``, one zero point) need no ``Sub``: the
    mean becomes a real offset of what the layer reads, which joins the bias. The layer still reads them around the
    middle code, so that its integer sums, and the pre-activation codes they give, stay centred. They are taken when
    every feature's raw range, widened to hold 0, loses at most ``RAW_INPUT_MAX_LOSS`` bits against centred codes,
    and every constant feature is exactly 0 (its raw code is then exact too).
    """
    lo, hi = channel_ranges(h)
    centred = centred_codes(lo, hi)
    zero, scale = shared_zero(lo + mean, hi + mean)
    varies = hi > lo
    fits = np.where(varies, scale <= centred.scale * 2.0**RAW_INPUT_MAX_LOSS, lo + mean == 0)
    if not np.all(fits):
        return centred, centred.zero, mean + centred.centre
    return Codes(scale=scale, zero=MIDDLE, centre=(MIDDLE - zero) * scale - mean), zero, np.zeros_like(mean)


def encode(values: np.ndarray, codes: Codes) -> np.ndarray:
    """Real values (channels on axis 1) to codes, as a table does."""
    shape = (1, -1) + (1,) * (values.ndim - 2)
    return quantized.saturate(np.rint((values - codes.centre.reshape(shape)) / codes.scale.reshape(shape)) + codes.zero)


@dataclass(frozen=True)
class Stage:
    """One hidden layer of a sequential float model: ``dense`` weight ``[out, in]`` or conv ``[out, in, k, k]``, then its activation."""

    weight: np.ndarray
    bias: np.ndarray
    conv: bool
    activation: Callable[[np.ndarray], np.ndarray] | None  # of the pre-activation, channels on axis 1 (None: not yet known)
    pool: bool = False  # 2x2 max pooling with stride 2 after the activation
    pads: int = 0  # conv: zero padding on every side (stride 1)


@dataclass(frozen=True)
class Chain:
    """A sequential float model that int8 export can take: ``x - input_shift``, hidden stages, flatten, a dense head."""

    input_shape: tuple[int, ...]
    input_shift: np.ndarray | None  # per feature (channel), subtracted before the first stage
    stages: tuple[Stage, ...]
    head_weight: np.ndarray  # [out, in]
    head_bias: np.ndarray
    family: str = "mlp"

    @property
    def conv(self) -> bool:
        return len(self.input_shape) == 3


def fused_chain(model: FusedModel) -> Chain:
    """The chain of a built-in family's fused model (its LUT layers evaluated through their segment tables)."""
    conv = model.family == "convnet"
    if conv and model.pool != "max":
        raise QuantizationError("int8 convnet pooling", expected="max pooling (a max of codes is the code of the max)", got=f"{model.pool} pooling")
    stages = tuple(Stage(layer.weight, layer.bias, conv, activation_function(layer), pool=conv, pads=layer.weight.shape[-1] // 2 if conv else 0)
                   for layer in model.layers)
    return Chain(tuple(model.input_shape), model.input_shift, stages, model.head_weight, model.head_bias, model.family)


def quantize_model(model: FusedModel, calibration: np.ndarray) -> QuantizedModel:
    """The integer model of a built-in family's fused ``model``, calibrated on the raw inputs ``calibration``."""
    return quantize_chain(fused_chain(model), calibration)


def quantize_chain(chain: Chain, calibration: np.ndarray) -> QuantizedModel:
    """The integer model of ``chain``, calibrated layer by layer on the raw inputs ``calibration``."""
    x = np.asarray(calibration, dtype=np.float64)
    if x.shape[1:] != tuple(chain.input_shape) or len(x) < MIN_CALIBRATION_ROWS or not np.all(np.isfinite(x)):
        raise QuantizationError("calibration data", expected=f"at least {MIN_CALIBRATION_ROWS} finite rows of shape {list(chain.input_shape)}",
                                got=f"{list(x.shape)}" + ("" if np.all(np.isfinite(x)) else " with NaN or Inf"))
    row = (-1,) + (1,) * (len(chain.input_shape) - 1)  # per feature, or per channel of an image
    mean = np.zeros(chain.input_shape[0]) if chain.input_shift is None else chain.input_shift
    h = x - mean.reshape(row)[None]  # what the first stage reads
    first_is_conv = chain.stages[0].conv if chain.stages else False
    if first_is_conv:  # a convolution pads the standardized input with zeros: the codes must hold a real zero
        reads = zero_centred_codes(*channel_ranges(h))
        written, shift = reads.zero, mean + reads.centre
    else:
        reads, written, shift = dense_input_codes(h, mean)
    qinput = QuantizedInput(shift=shift.reshape(row).astype(np.float32) if np.any(shift != 0) else None,
                            multiplier=(1.0 / reads.scale).reshape(row).astype(np.float32), zero=written)
    codes = quantized.quantize_input(x, qinput)
    layers = []
    for i, stage in enumerate(chain.stages):
        consumer_is_conv = i + 1 < len(chain.stages) and chain.stages[i + 1].conv
        if not stage.conv:
            codes, reads = flattened(codes, reads)
        qlayer, reads, codes = _quantize_hidden(stage, reads, codes, consumer_is_conv)
        layers.append(qlayer)
    codes, reads = flattened(codes, reads)
    wq, weight_scale, beta = _quantize_weights(chain.head_weight, chain.head_bias, reads, np.arange(codes.shape[1]))
    bias = np.rint(beta / weight_scale)
    bound = codes.shape[1] * (CODES - 1) * WEIGHT_LIMIT + np.abs(bias).max(initial=0)
    if bound > INT32_LIMIT:
        raise QuantizationError("int8 head", expected="int32 sums that cannot overflow", got=f"a bound of {bound:.3g}")
    head = QuantizedHead(weight=np.ascontiguousarray(wq.T), zero_in=reads.zero, bias=bias.astype(np.int32), scale=weight_scale.astype(np.float32))
    return QuantizedModel(chain.family, tuple(chain.input_shape), qinput, tuple(layers), head)


def flattened(codes: np.ndarray, reads: Codes) -> tuple[np.ndarray, Codes]:
    """Image codes ``[B, C, H, W]`` as the rows a dense layer reads (``Flatten``), each feature read as its channel's codes."""
    if codes.ndim == 2:
        return codes, reads
    per_feature = np.repeat(np.arange(codes.shape[1]), int(np.prod(codes.shape[2:])))
    return codes.reshape(len(codes), -1), Codes(reads.scale[per_feature], reads.zero, reads.centre[per_feature])


def _quantize_weights(weight: np.ndarray, bias: np.ndarray, reads: Codes, feature_channel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 weights of ``weight * scale`` per output channel, their scales, and ``beta`` (the bias plus the centres' share)."""
    scale = reads.scale[feature_channel]
    shape = (1, -1) + (1,) * (weight.ndim - 2)
    scaled = weight * scale.reshape(shape)
    flat = np.abs(scaled.reshape(len(scaled), -1)).max(axis=1)
    weight_scale = np.where(flat > 0, flat / WEIGHT_LIMIT, 1.0)
    wq = np.clip(np.rint(scaled / weight_scale.reshape((-1,) + (1,) * (weight.ndim - 1))), -WEIGHT_LIMIT, WEIGHT_LIMIT)
    centre = reads.centre[feature_channel]  # a real offset of the inputs, outside the integer product: it meets the float weights
    beta = bias + (weight.reshape(len(weight), len(centre), -1).sum(axis=2) @ centre)
    return wq.astype(np.int8), weight_scale, beta


def _quantize_hidden(layer: Stage, reads: Codes, codes: np.ndarray, consumer_is_conv: bool) -> tuple[QuantizedLayer, Codes, np.ndarray]:
    """One hidden layer calibrated on the ``codes`` it reads; returns it, how its output codes read, and those codes."""
    channels_in = layer.weight.shape[1]
    wq, weight_scale, beta = _quantize_weights(layer.weight, layer.bias, reads, np.arange(channels_in))
    if layer.conv:
        acc = quantized.integer_conv(codes, reads.zero, wq, layer.pads)
    else:
        acc = quantized.integer_matmul(codes, reads.zero, np.ascontiguousarray(wq.T))
    real = acc * weight_scale.reshape((1, -1) + (1,) * (acc.ndim - 2))
    zero_pre, pre_scale = shared_zero(*channel_ranges(real))
    multiplier = (weight_scale / pre_scale).astype(np.float32)
    pre = quantized.requantize(acc, multiplier, zero_pre, 1)
    # The real pre-activation of every code, from the float32 multiplier the graph uses.
    steps = np.arange(CODES, dtype=np.float64)[:, None] - zero_pre
    values = steps / multiplier.astype(np.float64)[None, :] * weight_scale[None, :] + beta[None, :]  # (256, C)
    outputs = layer.activation(values)  # (256, C), channels on axis 1
    lo, hi = channel_ranges(quantized.lookup(pre, outputs, 1))  # the outputs the calibration data reaches
    writes = zero_centred_codes(lo, hi) if consumer_is_conv else centred_codes(lo, hi)
    table = encode(outputs, writes)
    qlayer = QuantizedLayer(kind="conv" if layer.conv else "dense", weight=wq if layer.conv else np.ascontiguousarray(wq.T),
                            zero_in=reads.zero, multiplier=multiplier, zero_pre=zero_pre, table=table, pads=layer.pads, pool=layer.pool)
    _, out = quantized.layer_codes(qlayer, codes)
    return qlayer, writes, out


# --- a torch module's graph as a chain ---------------------------------------------------------------------

SEQUENTIAL = ("a sequential model: Linear or Conv2d layers (stride 1, square kernel, equal padding, BatchNorm folded), each followed by "
              "a LUTActivation, ReLU or GELU and optionally a 2x2 MaxPool, a Flatten before the first Linear after a Conv2d, "
              "and a Linear head")


def module_chain(proto: onnx.ModelProto) -> Chain:
    """The chain of a ``torch.onnx`` export whose LUT layers are still ``lutnet.Lookup`` placeholders.

    int8 export takes sequential models only (``SEQUENTIAL``); the first node that does not fit is named in the error.
    """
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise QuantizationError("int8 export of a module", expected="one input and one output", got=f"{len(graph.input)} and {len(graph.output)}")
    dims = graph.input[0].type.tensor_type.shape.dim
    if graph.input[0].type.tensor_type.elem_type != TensorProto.FLOAT or any(not d.HasField("dim_value") for d in dims[1:]) or len(dims) not in (2, 4):
        raise QuantizationError("int8 export of a module", expected="one float32 input [batch, features] or [batch, C, H, W] of fixed size",
                                got=onnx.helper.printable_type(graph.input[0].type))
    constants = graph_constants(proto)
    constant = lambda name: None if name not in constants else np.asarray(constants[name], dtype=np.float64)  # noqa: E731
    nodes = [n for n in graph.node if not (n.op_type == "Constant" and n.domain == "")]
    uses: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    value, stages, pending = graph.input[0].name, [], None

    def refuse(node: onnx.NodeProto, why: str) -> QuantizationError:
        return QuantizationError("int8 export of a module", expected=SEQUENTIAL, got=f"{node.op_type} node {node.name or node.output[0]!r}: {why}")

    for node in nodes:
        if not node.input or node.input[0] != value and not (node.op_type == "Add" and value in node.input):
            raise refuse(node, "it does not read the previous layer's output (a branch or a second path)")
        if uses.get(value, 0) != 1:
            raise refuse(node, f"the value {value!r} it reads is used {uses.get(value, 0)} times (a residual or a branch)")
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op in ("Gemm", "MatMul", "Conv"):
            if pending is not None:
                raise refuse(node, "two linear layers with no activation between them")
            pending = _linear(node, op, attributes, constant, refuse)
        elif op == "Add" and pending is not None and not pending.conv and pending.activation is None:
            other = constant(node.input[1] if node.input[0] == value else node.input[0])
            if other is None or other.size not in (1, len(pending.bias)):
                raise refuse(node, "an addition of something other than a bias")
            pending = Stage(pending.weight, pending.bias + other.reshape(-1), False, None)
        elif is_placeholder(node) or op in ("Relu", "Gelu"):
            if pending is None:
                raise refuse(node, "an activation that does not follow a Linear or Conv2d layer")
            if op == "Gelu" and attributes.get("approximate", b"none") not in (b"none", "none"):
                raise refuse(node, "tanh-approximated GELU")
            activation = _placeholder_activation(placeholder_settings(node, constant), refuse, node) if is_placeholder(node) \
                else activation_named(op.lower())
            stages.append(Stage(pending.weight, pending.bias, pending.conv, activation, pads=pending.pads))
            pending = None
        elif op == "MaxPool":
            pooled = attributes.get("kernel_shape") == [2, 2] and attributes.get("strides") == [2, 2] and not any(attributes.get("pads", []))
            if not (pooled and not attributes.get("ceil_mode", 0)) or pending is not None or not stages or not stages[-1].conv or stages[-1].pool:
                raise refuse(node, "only a 2x2 max pooling with stride 2 right after a convolution's activation")
            stages[-1] = Stage(stages[-1].weight, stages[-1].bias, True, stages[-1].activation, pool=True, pads=stages[-1].pads)
        elif op in ("Flatten", "Reshape"):
            shape = constant(node.input[1]) if op == "Reshape" and len(node.input) > 1 else None
            flat = attributes.get("axis", 1) == 1 if op == "Flatten" else shape is not None and shape.size == 2 and -1 in shape.tolist()
            if not flat or pending is not None:
                raise refuse(node, "only a flatten of each row, between layers")
        else:
            raise refuse(node, "an operator int8 export does not take")
        value = node.output[0]
    if pending is None or pending.conv or value != graph.output[0].name:
        raise QuantizationError("int8 export of a module", expected=SEQUENTIAL, got="a model that does not end in a Linear head")
    shape = tuple(int(d.dim_value) for d in dims[1:])
    return Chain(shape, None, tuple(stages), pending.weight, pending.bias, "module")


def _linear(node: onnx.NodeProto, op: str, attributes: dict, constant: Callable, refuse: Callable) -> Stage:
    """A Gemm, MatMul or Conv with constant weights as a stage waiting for its activation (``activation`` None)."""
    weight = constant(node.input[1])
    bias = constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if weight is None or (len(node.input) > 2 and node.input[2] and bias is None):
        raise refuse(node, "weights computed at run time")
    if op == "Gemm":
        if attributes.get("transA", 0) or weight.ndim != 2:
            raise refuse(node, "a transposed input")
        weight = attributes.get("alpha", 1.0) * (weight if attributes.get("transB", 0) else weight.T)
        bias = attributes.get("beta", 1.0) * np.broadcast_to(0.0 if bias is None else bias.reshape(-1), (len(weight),))
        return Stage(weight, np.array(bias), False, None)
    if op == "MatMul":
        if weight.ndim != 2:
            raise refuse(node, "a batched matrix product")
        return Stage(weight.T.copy(), np.zeros(weight.shape[1]), False, None)
    k = weight.shape[-1]
    pads = attributes.get("pads", [0, 0, 0, 0])
    plain = (weight.ndim == 4 and weight.shape[-2] == k and attributes.get("group", 1) == 1 and set(attributes.get("strides", [1, 1])) == {1}
             and set(attributes.get("dilations", [1, 1])) == {1} and len(set(pads)) == 1 and attributes.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))
    if not plain:
        raise refuse(node, "a convolution with groups, strides, dilations, uneven padding or a non-square kernel")
    return Stage(weight, np.zeros(len(weight)) if bias is None else bias, True, None, pads=int(pads[0]))


def _placeholder_activation(settings: LookupSettings, refuse: Callable, node: onnx.NodeProto) -> Callable[[np.ndarray], np.ndarray]:
    """The LUT layer's activation of its input (channels on axis 1): the segment table at ``rows * z + shift``."""
    if settings.dim != 1:
        raise refuse(node, "a LUTActivation whose channels are not on dimension 1")
    rows, shift = settings.coordinate_map()
    table = settings.segment_table()

    def activation(z: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (z.ndim - 2)
        return segment_values(table, z * rows.reshape(shape) + shift.reshape(shape))

    return activation


# --- the graph --------------------------------------------------------------------------------------------

def pre_activation_codes(index: int) -> str:
    """Name of the value holding hidden layer ``index``'s pre-activation codes: verification reads it."""
    return f"pre_activation_codes_{index}"


def build_quantized_graph(model: QuantizedModel, *, num_outputs: int, card: dict[str, str], opset: int = DEFAULT_OPSET,
                          input_name: str = metadata.DEFAULT_INPUT_NAME, output_name: str = metadata.DEFAULT_OUTPUT_NAME) -> onnx.ModelProto:
    """The standard-ONNX int8 graph of ``model`` (float32 in and out), checked with the full ONNX checker."""
    check_opset(opset)
    b = GraphBuilder(opset)
    x = input_name
    if model.input.shift is not None:
        x = b.op("Sub", [x, b.constant("input_shift", model.input.shift[None])])
    x = b.op("Mul", [x, b.constant("input_multiplier", model.input.multiplier[None])])
    unit = b.constant("unit_scale", np.array(1.0))
    codes = b.op("QuantizeLinear", [x, unit, b.constant("input_zero", np.array(model.input.zero), np.uint8)], "input_codes")
    spatial = tuple(model.input_shape[1:])
    spatial_input = len(spatial) > 0  # the codes are images: a dense layer flattens them first
    for i, layer in enumerate(model.layers):
        inputs = [codes, unit, b.constant(f"hidden{i}.input_zero", np.array(layer.zero_in), np.uint8),
                  b.constant(f"hidden{i}.weight", layer.weight, np.int8), b.constant(f"hidden{i}.multiplier", layer.multiplier),
                  b.constant(f"hidden{i}.weight_zero", np.zeros(layer.channels), np.int8), unit,
                  b.constant(f"hidden{i}.pre_zero", np.array(layer.zero_pre), np.uint8)]
        if layer.kind == "dense":
            if spatial_input:
                inputs[0] = b.op("Flatten", [codes], axis=1)
                spatial_input = False
            pre = b.op("QLinearMatMul", inputs, output=pre_activation_codes(i))
            table = layer.table
        else:
            pre = b.op("QLinearConv", inputs, output=pre_activation_codes(i), pads=[layer.pads] * 4)
            k = layer.weight.shape[-1]
            spatial = tuple(size + 2 * layer.pads - k + 1 for size in spatial)
            # Channels last for the [256, C] table (tables replicated over positions would skip the transposes, but
            # multiply their size by H x W).
            index = b.op("Cast", [b.op("Transpose", [pre], perm=[0, 2, 3, 1])], f"hidden{i}.index", to=TensorProto.INT32)
            rows = b.op("Reshape", [index, b.constant("rows", np.array([-1, layer.channels]), np.int64)])
            looked = b.op("GatherElements", [b.constant(f"act{i}.table", layer.table, np.uint8), rows], axis=0)
            shape = b.constant("nhwc", np.array([-1, *spatial, layer.channels]), np.int64)
            codes = b.op("Transpose", [b.op("Reshape", [looked, shape])], f"act{i}.codes", perm=[0, 3, 1, 2])
            if layer.pool:
                codes = b.op("MaxPool", [codes], kernel_shape=[2, 2], strides=[2, 2])
                spatial = (spatial[0] // 2, spatial[1] // 2)
            continue
        index = b.op("Cast", [pre], f"hidden{i}.index", to=TensorProto.INT32)
        codes = b.op("GatherElements", [b.constant(f"act{i}.table", table, np.uint8), index], f"act{i}.codes", axis=0)
        if layer.pool:
            codes = b.op("MaxPool", [codes], kernel_shape=[2, 2], strides=[2, 2])
            spatial = (spatial[0] // 2, spatial[1] // 2)
    if spatial_input:
        codes = b.op("Flatten", [codes], axis=1)
    head = model.head
    acc = b.op("MatMulInteger", [codes, b.constant("head.weight", head.weight, np.int8),
                                 b.constant("head.input_zero", np.array(head.zero_in), np.uint8),
                                 b.constant("head.weight_zero", np.zeros(len(head.bias)), np.int8)], "head.sums")
    # (acc - (-bias)) * scale: DequantizeLinear subtracts its int32 zero point in int32, the sum an Add would give.
    b.op("DequantizeLinear", [acc, b.constant("head.scale", head.scale), b.constant("head.bias_negated", -head.bias, np.int32)],
         output=output_name, axis=1)
    graph = helper.make_graph(
        b.nodes, "lutnet_int8",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", *model.input_shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", num_outputs])],
        b.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="lutnet", producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(proto, card)
    onnx.checker.check_model(proto, full_check=True)
    return proto


# --- verification -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """The int8 model against the float model on the evaluation data (the test split, or the rows a user passes)."""

    rows: int
    metric: str  # "accuracy" | "rmse" | "class_agreement" (no targets) | "none"
    float_value: float | None
    int8_value: float | None
    class_agreement: float | None

    @property
    def change(self) -> float | None:
        if self.float_value is None or self.int8_value is None:
            return None
        if self.metric == "rmse":
            if self.float_value == 0:
                return 0.0 if self.int8_value == 0 else float("inf")
            return self.int8_value / self.float_value - 1.0
        return self.int8_value - self.float_value

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "metric": self.metric, "float": self.float_value, "int8": self.int8_value,
                "change": self.change, "class_agreement": self.class_agreement}


@dataclass(frozen=True)
class QuantizedVerification:
    samples: int
    mismatched_outputs: int  # samples whose graph outputs differ from the integer reference in any bit
    mismatched_codes: int  # pre-activation codes that differ, over all layers and samples
    evaluation: Evaluation
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exact(self) -> bool:
        return self.mismatched_outputs == 0 and self.mismatched_codes == 0

    def summary(self) -> str:
        e = self.evaluation
        parts = [f"integer graph {'equals' if self.exact else 'DIFFERS from'} the numpy reference bit for bit on {self.samples} inputs"]
        if e.metric in ("accuracy", "rmse"):
            parts.append(f"{e.metric} {e.float_value:.4f} (float) -> {e.int8_value:.4f} (int8) on {e.rows} rows")
        if e.class_agreement is not None:
            parts.append(f"classes agree with the float model on {100 * e.class_agreement:.2f}%")
        return f"{'passed' if self.passed else 'FAILED'}: " + ", ".join(parts)


def evaluate(int8_outputs: np.ndarray, float_outputs: np.ndarray, targets: np.ndarray | None, classification: bool) -> Evaluation:
    rows = len(int8_outputs)
    agreement = float(np.mean(int8_outputs.argmax(axis=1) == float_outputs.argmax(axis=1))) if classification else None
    if targets is None:
        return Evaluation(rows, "class_agreement" if classification else "none", None, None, agreement)
    targets = np.asarray(targets)
    if classification:
        score = lambda out: float(np.mean(out.argmax(axis=1) == targets.reshape(-1)))  # noqa: E731
        return Evaluation(rows, "accuracy", score(float_outputs), score(int8_outputs), agreement)
    rmse = lambda out: float(np.sqrt(np.mean((out.reshape(len(targets), -1) - targets.reshape(len(targets), -1)) ** 2)))  # noqa: E731
    return Evaluation(rows, "rmse", rmse(float_outputs), rmse(int8_outputs), None)


def bound_failures(evaluation: Evaluation, max_accuracy_drop: float, max_rmse_increase: float) -> list[str]:
    """What the evaluation breaks of the accuracy bounds, each saying by how much."""
    e, change = evaluation, evaluation.change
    if e.metric == "accuracy" and change is not None and -change > max_accuracy_drop:
        return [f"int8 accuracy {e.int8_value:.4f} is {100 * -change:.2f} points below the float model's {e.float_value:.4f}, "
                f"more than the {100 * max_accuracy_drop:.2f} allowed"]
    if e.metric == "rmse" and change is not None and change > max_rmse_increase:
        return [f"int8 RMSE {e.int8_value:.4g} is {100 * change:.1f}% above the float model's {e.float_value:.4g}, "
                f"more than the {100 * max_rmse_increase:.1f}% allowed"]
    if e.metric == "class_agreement" and e.class_agreement is not None and 1 - e.class_agreement > max_accuracy_drop:
        return [f"int8 classes agree with the float model on {100 * e.class_agreement:.2f}% of the rows (no targets to score), "
                f"less than the {100 * (1 - max_accuracy_drop):.2f}% that bounds the accuracy drop"]
    return []


def run_graph(proto: onnx.ModelProto, x: np.ndarray, layers: int, input_name: str = metadata.DEFAULT_INPUT_NAME) -> tuple[np.ndarray, list[np.ndarray]]:
    """The graph's output on ``x`` and every hidden layer's pre-activation codes (onnxruntime, CPU)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.extend(helper.make_tensor_value_info(pre_activation_codes(i), TensorProto.UINT8, None) for i in range(layers))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        output, *codes = session.run(None, {input_name: np.asarray(x, dtype=np.float32)})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise QuantizationError("int8 model", expected="to load and run in onnxruntime", got=str(exc).splitlines()[0]) from None
    return output, codes


def verify_quantized(proto: onnx.ModelProto, model: QuantizedModel, probes: np.ndarray, evaluation_inputs: np.ndarray,
                     float_outputs: np.ndarray, targets: np.ndarray | None, *, classification: bool,
                     max_accuracy_drop: float = MAX_ACCURACY_DROP, max_rmse_increase: float = MAX_RMSE_INCREASE) -> QuantizedVerification:
    """Bit-exactness against ``lutnet.quantized.forward`` on ``probes``, and the accuracy bounds on the evaluation rows."""
    x = np.concatenate([np.asarray(evaluation_inputs, dtype=np.float32), np.asarray(probes, dtype=np.float32)])
    output, codes = run_graph(proto, x, len(model.layers))
    expected, expected_codes = quantized.forward(model, x)
    same = (output.view(np.uint32) == expected.view(np.uint32)).reshape(len(x), -1).all(axis=1)
    mismatched_codes = sum(int(np.sum(got != want)) for got, want in zip(codes, expected_codes, strict=True))
    rows = len(evaluation_inputs)
    evaluation = evaluate(output[:rows].astype(np.float64), np.asarray(float_outputs, dtype=np.float64), targets, classification)
    failures = []
    if not same.all() or mismatched_codes:
        failures.append(f"the int8 graph differs from the numpy reference of its integer arithmetic on {int((~same).sum())} of {len(x)} "
                        f"inputs ({mismatched_codes} pre-activation codes)")
    failures += bound_failures(evaluation, max_accuracy_drop, max_rmse_increase)
    return QuantizedVerification(len(x), int((~same).sum()), mismatched_codes, evaluation, tuple(failures))


def quantization_card(verification: QuantizedVerification | None, calibration: np.ndarray, source: str) -> dict[str, str]:
    """The model card's record of the quantization: scheme, calibration data and the measured change (null unverified)."""
    data = np.ascontiguousarray(calibration, dtype=np.float32)
    record = {
        "scheme": "int8",
        "weights": f"int8, symmetric per output channel, |w| <= {WEIGHT_LIMIT}",
        "activations": "uint8; one 256-entry table per channel maps each pre-activation code to the next layer's code",
        "calibration": {"source": source, "rows": len(data), "sha256": hashlib.sha256(data.tobytes()).hexdigest()},
        "evaluation": None if verification is None else verification.evaluation.as_dict(),
        "exact": None if verification is None else verification.exact,
    }
    return {metadata.QUANTIZATION: json.dumps(record)}
