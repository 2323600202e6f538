"""The ONNX half of exporting a torch module: fold each ``lutnet.Lookup`` placeholder's coordinate map, emit its lookup.

``torch.onnx.export`` turns every ``LUTActivation`` into one placeholder node ``lutnet.Lookup(x, table, lo, hi)``
(attributes ``dim``, ``rank``, ``channels``, ``positions``, ``mode``, ``extrapolate``). This pass, numpy and onnx only,
replaces each by the lookup ``GraphBuilder.lookup`` builds for the built-in families, on the segment table
of ``fold.segment_table``. The lookup needs the coordinate ``v = rows * x + shift`` per channel (see
``fold.GRIDS``). Where that map can go, it folds into the layer that produced ``x``:

| producer of ``x`` (its only consumer the lookup) | where the map goes |
|---|---|
| ``Gemm`` with constant ``B`` (and ``C``), channels on axis 1 | ``B``'s output rows and ``C`` |
| ``Conv`` with constant weights, channels on axis 1 | the output channels' filters and the bias |
| ``Add(MatMul(h, W), c)`` or ``MatMul(h, W)``, constant ``W``, ``c``; channels last | ``W``'s columns and ``c`` (else an ``Add``) |

An inference ``BatchNormalization`` after a ``Conv`` or ``Gemm`` is already folded into it by torch.onnx's
optimizer (onnxscript's rewrite rules), so the map folds into the result. Anything else (a residual add, a
LayerNorm or attention output, a graph input, a value used twice) keeps the map as one ``Mul`` and one ``Add``
before the lookup.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lutnet.errors import LutnetError
from lutnet.export.fold import GRIDS, SegmentTable, segment_table
from lutnet.export.graph import GraphBuilder
from lutnet.lut import MODES, check_table, resample_table

DOMAIN = "lutnet"
OP_TYPE = "Lookup"
NAME_PREFIX = "lutnet/"  # every value and initializer this pass adds


class LoweringError(LutnetError):
    """A placeholder lookup that cannot become a plain ONNX lookup (a table that is not a constant, a bad attribute)."""


@dataclass(frozen=True)
class LookupSettings:
    """One placeholder's attributes and constant table, float64."""

    name: str
    table: np.ndarray  # (R, K+1)
    lo: np.ndarray  # (R,)
    hi: np.ndarray  # (R,)
    dim: int
    rank: int
    channels: int
    mode: str
    extrapolate: str
    positions: int = 0  # values per channel and row after ``dim`` (``H * W``); 0 when a dimension is known only at run time

    @property
    def bins(self) -> int:
        return self.table.shape[1] - 1

    def exported(self, mode: str | None, bins: int | None) -> LookupSettings:
        """The same layer with its knots resampled to ``bins`` and evaluated in ``mode`` (as trained when ``None``)."""
        mode, bins = mode or self.mode, bins or self.bins
        if (mode, bins) == (self.mode, self.bins):
            return self
        table = resample_table(self.table, self.lo, self.hi, self.lo, self.hi, bins, self.mode, self.extrapolate)
        return LookupSettings(self.name, table, self.lo, self.hi, self.dim, self.rank, self.channels, mode, self.extrapolate, self.positions)

    def coordinate_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``rows`` and ``shift`` of ``v = rows * x + shift`` on the grid of the mode and extrapolation."""
        scale, offset = GRIDS[self.mode, self.extrapolate]
        lo, hi = (np.broadcast_to(a, (self.channels,)) for a in (self.lo, self.hi))
        rows = scale * self.bins / (hi - lo)
        return rows, offset - rows * lo

    def segment_table(self) -> SegmentTable:
        return segment_table(np.broadcast_to(self.table, (self.channels, self.table.shape[1])), self.mode, self.extrapolate)


@dataclass(frozen=True)
class LoweredLookup:
    """Where one lookup ended up: the value holding its coordinate ``v`` (input layout) and what took the map."""

    name: str
    coordinate: str
    settings: LookupSettings
    segments: int
    folded_into: str | None  # the producer's op type, or None where a Mul and an Add compute the map


@dataclass(frozen=True)
class LoweredModel:
    proto: onnx.ModelProto
    lookups: tuple[LoweredLookup, ...]


def is_placeholder(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type == OP_TYPE


def lower_lookups(proto: onnx.ModelProto, *, mode: str | None = None, bins: int | None = None, fold: bool = True) -> LoweredModel:
    """A copy of ``proto`` with every placeholder replaced by its lookup (tables resampled to ``mode``/``bins`` when given)."""
    if mode is not None and mode not in MODES:
        raise LoweringError("lookup mode", expected=f"one of {list(MODES)}", got=repr(mode))
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = _Graph(model)
    lowered = []
    for node in list(graph.nodes):
        if is_placeholder(node):
            lowered.append(graph.lower(node, mode, bins, fold))
    graph.finish()
    return LoweredModel(model, tuple(lowered))


def placeholder_settings(node: onnx.NodeProto, constant: Callable[[str], np.ndarray | None]) -> LookupSettings:
    """A placeholder's attributes and its table, lo and hi, which ``constant`` (value name -> float64 array or None) must know."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    where = node.name or node.output[0]
    table, lo, hi = (constant(name) for name in node.input[1:4])
    if table is None or lo is None or hi is None:
        raise LoweringError(f"lookup {where}", expected="its table, lo and hi as constants of the graph", got="values computed at run time")
    check_table(table, lo, hi)
    text = lambda key: attributes[key].decode() if isinstance(attributes[key], bytes) else attributes[key]  # noqa: E731
    return LookupSettings(where, table, lo, hi, int(attributes["dim"]), int(attributes["rank"]), int(attributes["channels"]),
                          text("mode"), text("extrapolate"), int(attributes.get("positions", 0)))


def graph_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer and ``Constant`` node output of ``model``'s graph, by value name."""
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain == "" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return constants


class _Graph:
    """The nodes of a model being rewritten, with its constants, producers and consumer counts."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.constants = graph_constants(model)
        self.producers = {out: node for node in self.nodes for out in node.output}
        self.outputs = {v.name for v in model.graph.output}
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.builder = GraphBuilder(opset, prefix=NAME_PREFIX)
        self.lowered = 0
        taken = [name for name in (*self.constants, *self.producers) if name.startswith(NAME_PREFIX)]
        if taken:
            raise LoweringError("value names of the exported graph", expected=f"none starting with {NAME_PREFIX!r}", got=taken[:3])

    def consumers(self, value: str) -> int:
        return sum(list(node.input).count(value) for node in self.nodes) + (value in self.outputs)

    def constant(self, value: str) -> np.ndarray | None:
        array = self.constants.get(value)
        return None if array is None else np.asarray(array, dtype=np.float64)

    def lower(self, node: onnx.NodeProto, mode: str | None, bins: int | None, fold: bool) -> LoweredLookup:
        settings = self.settings(node).exported(mode, bins)
        rows, shift = settings.coordinate_map()
        x = node.input[0]
        folded_into = self.fold(x, rows, shift, settings) if fold else None
        at = self.nodes.index(node)
        self.builder.nodes = []
        coordinate = x if folded_into is not None else self.affine(x, rows, shift, settings)
        table = settings.segment_table()
        self.builder.lookup_along(coordinate, table, self.lowered, settings.dim, settings.rank, output=node.output[0],
                                  positions=settings.positions)
        self.nodes[at : at + 1] = self.builder.nodes
        self.lowered += 1
        return LoweredLookup(settings.name, coordinate, settings, table.segments, folded_into)

    def settings(self, node: onnx.NodeProto) -> LookupSettings:
        return placeholder_settings(node, self.constant)

    def affine(self, x: str, rows: np.ndarray, shift: np.ndarray, settings: LookupSettings) -> str:
        """``v = x * rows + shift`` with the per-channel constants shaped along ``settings.dim``."""
        shape = [1] * settings.rank
        shape[settings.dim] = -1
        scaled = self.builder.op("Mul", [x, self.builder.constant("coordinate_scale", rows.reshape(shape))])
        return self.builder.op("Add", [scaled, self.builder.constant("coordinate_shift", shift.reshape(shape))], "coordinate")

    def fold(self, x: str, rows: np.ndarray, shift: np.ndarray, settings: LookupSettings) -> str | None:
        """Fold ``v = rows * x + shift`` into the producer of ``x``; the producer's op type, or None where it cannot take it."""
        producer = self.producers.get(x)
        if producer is None or producer.domain not in ("", "ai.onnx") or self.consumers(x) != 1:
            return None
        channels_first = settings.dim == 1
        channels_last = settings.dim == settings.rank - 1
        if producer.op_type == "Gemm" and channels_first:
            return self.fold_gemm(producer, rows, shift)
        if producer.op_type == "Conv" and channels_first:
            return self.fold_conv(producer, rows, shift)
        if producer.op_type in ("Add", "MatMul") and channels_last:
            return self.fold_matmul(producer, rows, shift)
        return None

    def fold_gemm(self, gemm: onnx.NodeProto, rows: np.ndarray, shift: np.ndarray) -> str | None:
        attributes = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        weight = self.constant(gemm.input[1])
        bias = self.constant(gemm.input[2]) if len(gemm.input) > 2 and gemm.input[2] else np.zeros(())
        if attributes.get("transA", 0) or weight is None or bias is None or bias.size not in (1, len(rows)) or weight.ndim != 2:
            return None
        trans_b = attributes.get("transB", 0)
        scaled = attributes.get("alpha", 1.0) * weight * (rows[:, None] if trans_b else rows[None, :])
        new_bias = rows * np.broadcast_to(attributes.get("beta", 1.0) * bias.reshape(-1), rows.shape) + shift
        inputs = [gemm.input[0], self.builder.constant("folded_weight", scaled), self.builder.constant("folded_bias", new_bias)]
        gemm.CopyFrom(helper.make_node("Gemm", inputs, list(gemm.output), name=gemm.name, transB=trans_b))
        return "Gemm"

    def fold_conv(self, conv: onnx.NodeProto, rows: np.ndarray, shift: np.ndarray) -> str | None:
        weight = self.constant(conv.input[1])
        bias = self.constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros(len(rows))
        if weight is None or bias is None or weight.shape[0] != len(rows):
            return None
        scaled = weight * rows.reshape((-1,) + (1,) * (weight.ndim - 1))
        del conv.input[1:]
        conv.input.extend([self.builder.constant("folded_weight", scaled), self.builder.constant("folded_bias", rows * bias + shift)])
        return "Conv"

    def fold_matmul(self, node: onnx.NodeProto, rows: np.ndarray, shift: np.ndarray) -> str | None:
        """``MatMul(h, W)`` or ``Add(MatMul(h, W), c)`` (either order) with constant ``W`` ``[F, C]`` and ``c``."""
        if node.op_type == "MatMul":
            matmul, bias_input = node, None
        else:
            bias_input = next((i for i, name in enumerate(node.input) if self.constant(name) is not None), None)
            matmul = self.producers.get(node.input[1 - bias_input]) if bias_input is not None else None
            if matmul is None or matmul.op_type != "MatMul" or self.consumers(matmul.output[0]) != 1:
                return None
        weight = self.constant(matmul.input[1])
        if weight is None or weight.ndim != 2 or weight.shape[1] != len(rows):
            return None
        bias = np.zeros(()) if bias_input is None else self.constant(node.input[bias_input])
        if bias.size not in (1, len(rows)) or any(d != 1 for d in bias.shape[:-1]):
            return None
        matmul.input[1] = self.builder.constant("folded_weight", weight * rows[None, :])
        new_bias = rows * np.broadcast_to(bias.reshape(-1), rows.shape) + shift
        if bias_input is None:  # no bias to take the shift: an Add of it after the MatMul, under the MatMul's output name
            product = self.builder.fresh_name("folded_product")
            out = matmul.output[0]
            matmul.output[0] = product
            self.nodes.insert(self.nodes.index(matmul) + 1,
                              helper.make_node("Add", [product, self.builder.constant("folded_bias", new_bias)], [out], name=product + "_shift"))
            return "MatMul"
        node.input[bias_input] = self.builder.constant("folded_bias", new_bias.reshape(bias.shape[:-1] + (len(rows),)))
        return "MatMul+Add"

    def finish(self) -> None:
        """Install the new nodes and initializers, drop constants nothing reads any more and the placeholder domain."""
        graph = self.model.graph
        used = {name for node in self.nodes for name in node.input} | self.outputs
        del graph.node[:]
        graph.node.extend(self.nodes)
        kept = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept + self.builder.initializers)
        produced = {out for node in self.nodes for out in node.output}
        kept_info = [v for v in graph.value_info if v.name in produced]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
        imports = [o for o in self.model.opset_import if o.domain != DOMAIN]
        del self.model.opset_import[:]
        self.model.opset_import.extend(imports)
