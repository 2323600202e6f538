"""What an int8 lookup-table graph computes: its integer model and the exact numpy reference of its arithmetic.

A quantized lutnet model carries uint8 codes between layers. Each hidden layer is an integer matrix product
(or convolution) of the previous codes with int8 weights, requantized per channel into a uint8 code of the
pre-activation, and ONE per-channel table of 256 entries that maps that code straight to the next layer's
input code::

    acc[c]  = sum_f (a[f] - zero_in) * W[f, c]                      int32, exact
    code[c] = clip(rint(float32(acc[c]) * multiplier[c]) + zero_pre, 0, 255)
    a'[c]   = table[code[c], c]                                      uint8

The table folds in everything between two matrix products: the bias, the learned activation, and the
quantization of its output for the next layer (``lutnet.export.quantize`` builds it). The input is shifted
(where its codes need it) and scaled per feature in float32, then quantized (``QuantizeLinear``); the head is an
integer product plus an int32 bias, dequantized per output (``DequantizeLinear``, the bias its negated zero
point), so outputs are float again.

``forward`` below is the reference: it reproduces onnxruntime's ``QuantizeLinear``, ``QLinearMatMul``,
``QLinearConv``, ``GatherElements``, ``MaxPool``, ``MatMulInteger`` and ``DequantizeLinear`` bit for bit
(float32 products rounded half to even), which the exporter checks on every int8 export.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lutnet.errors import LutnetError

CODES = 256  # uint8 codes per value, the rows of every table
SCHEMES = ("int8",)  # --quantize choices
# Weights use 7 bits (|w| <= 63). x86 CPUs without VNNI multiply uint8 by int8 with an instruction whose pairwise
# int16 sums saturate for full-range weights, so onnxruntime's results would depend on the CPU; with 7-bit weights
# every pair fits and the integer graph is exact everywhere (OpenVINO and onnxruntime recommend the same).
WEIGHT_LIMIT = 63


@dataclass(frozen=True)
class QuantizedInput:
    """``code = clip(rint((x - shift) * multiplier) + zero, 0, 255)``: ``[Sub]``, ``Mul`` and a per-tensor ``QuantizeLinear``.

    ``shift`` and ``multiplier`` are per feature (per channel for images). onnxruntime's per-axis ``QuantizeLinear``
    takes a slow path, so the per-feature part is float arithmetic and the quantization itself per tensor.
    """

    shift: np.ndarray | None  # float32, the shape of one input row (channels: [C, 1, 1]); None where it is zero
    multiplier: np.ndarray  # float32, the shape of one input row
    zero: int


@dataclass(frozen=True)
class QuantizedLayer:
    """One hidden layer: integer product, per-channel requantization, per-channel table (and 2x2 max pooling)."""

    kind: str  # "dense" | "conv"
    weight: np.ndarray  # int8: dense [in, out] (the MatMul layout); conv [out, in, k, k]
    zero_in: int  # zero point of the codes this layer reads
    multiplier: np.ndarray  # float32 (C,): acc -> pre-activation code
    zero_pre: int  # zero point of the pre-activation codes
    table: np.ndarray  # uint8 (256, C): pre-activation code -> next layer's input code
    pads: int = 0  # conv: zero ("same") padding on every side, in codes equal to zero_in
    pool: bool = False  # conv: 2x2 max pooling with stride 2 after the table

    @property
    def channels(self) -> int:
        return self.table.shape[1]


@dataclass(frozen=True)
class QuantizedHead:
    """``output = float32(acc + bias) * scale`` with ``acc`` the integer product of the last codes and ``weight``.

    In the graph, ``DequantizeLinear(acc, scale, zero_point=-bias)``: the same int32 sum, then the same product.
    """

    weight: np.ndarray  # int8 [in, out]
    zero_in: int
    bias: np.ndarray  # int32 (O,)
    scale: np.ndarray  # float32 (O,)


@dataclass(frozen=True)
class QuantizedModel:
    family: str  # "mlp" | "convnet"
    input_shape: tuple[int, ...]
    input: QuantizedInput
    layers: tuple[QuantizedLayer, ...]
    head: QuantizedHead


def quantize_input(x: np.ndarray, quantized: QuantizedInput) -> np.ndarray:
    """The input's ``[Sub]``, ``Mul`` and ``QuantizeLinear`` (scale 1) in float32, as onnxruntime computes them."""
    x = np.asarray(x, dtype=np.float32)
    if quantized.shift is not None:
        x = x - quantized.shift[None]
    with np.errstate(over="ignore"):  # float32 overflow is infinity, which saturates as in onnxruntime
        return saturate(np.rint(x * quantized.multiplier[None]) + np.float32(quantized.zero))


def requantize(acc: np.ndarray, multiplier: np.ndarray, zero: int, channel_axis: int = -1) -> np.ndarray:
    """``QLinearMatMul``/``QLinearConv``'s output stage: the int32 sums times a float32 multiplier, rounded half to even."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    product = acc.astype(np.float32) * multiplier.reshape(shape)
    return saturate(np.rint(product) + np.float32(zero))


def saturate(values: np.ndarray) -> np.ndarray:
    """Clip to the uint8 range and convert (NaN cannot occur: every caller's operands are finite)."""
    return np.clip(values, 0, CODES - 1).astype(np.uint8)


def integer_matmul(codes: np.ndarray, zero: int, weight: np.ndarray) -> np.ndarray:
    """``sum_f (codes[:, f] - zero) * weight[f, c]`` in int64 (float64 BLAS is exact below 2^53)."""
    product = (codes.astype(np.float64) - zero) @ weight.astype(np.float64)
    return product.astype(np.int64)


def integer_conv(codes: np.ndarray, zero: int, weight: np.ndarray, pads: int) -> np.ndarray:
    """Stride-1 cross-correlation of ``codes - zero`` (padded with zeros, i.e. with code ``zero``) and int8 ``weight``."""
    k = weight.shape[-1]
    shifted = np.pad(codes.astype(np.float64) - zero, ((0, 0), (0, 0), (pads, pads), (pads, pads)))
    height, width = shifted.shape[2] - k + 1, shifted.shape[3] - k + 1
    patches = np.lib.stride_tricks.sliding_window_view(shifted, (k, k), axis=(2, 3))[:, :, :height, :width]
    return np.einsum("bihwkl,oikl->bohw", patches, weight.astype(np.float64), optimize=True).astype(np.int64)


def lookup(codes: np.ndarray, table: np.ndarray, channel_axis: int) -> np.ndarray:
    """``table[codes[..., c, ...], c]``: ``GatherElements`` along axis 0 of the per-channel table."""
    moved = np.moveaxis(codes, channel_axis, -1)
    channels = np.arange(table.shape[1])
    return np.moveaxis(table[moved.astype(np.intp), channels], -1, channel_axis)


def max_pool2x2(codes: np.ndarray) -> np.ndarray:
    b, c, height, width = codes.shape
    blocks = codes[:, :, : height // 2 * 2, : width // 2 * 2].reshape(b, c, height // 2, 2, width // 2, 2)
    return blocks.max(axis=(3, 5))


def layer_codes(layer: QuantizedLayer, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One hidden layer on ``codes``: its pre-activation codes and its output codes (pooled where it pools)."""
    if layer.kind == "dense":  # image codes are flattened first, as torch.flatten(x, 1) does
        pre = requantize(integer_matmul(codes.reshape(len(codes), -1), layer.zero_in, layer.weight), layer.multiplier, layer.zero_pre)
        return pre, lookup(pre, layer.table, 1)
    pre = requantize(integer_conv(codes, layer.zero_in, layer.weight, layer.pads), layer.multiplier, layer.zero_pre, 1)
    out = lookup(pre, layer.table, 1)
    return pre, max_pool2x2(out) if layer.pool else out


def head_output(head: QuantizedHead, codes: np.ndarray) -> np.ndarray:
    acc = integer_matmul(codes.reshape(len(codes), -1), head.zero_in, head.weight) + head.bias
    return acc.astype(np.int32).astype(np.float32) * head.scale[None, :]


def forward(model: QuantizedModel, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs (float32) of the integer model on raw inputs ``x``, and every hidden layer's pre-activation codes."""
    x = np.asarray(x)
    if x.shape[1:] != tuple(model.input_shape):
        raise LutnetError("quantized model input", expected=["batch", *model.input_shape], got=list(x.shape))
    codes = quantize_input(x, model.input)
    pre_codes = []
    for layer in model.layers:
        pre, codes = layer_codes(layer, codes)
        pre_codes.append(pre)
    return head_output(model.head, codes), pre_codes
