"""The fused ONNX graph, built directly with ``onnx.helper``: float32, dynamic batch, one lookup per LUT layer.

Lookup formulation (the fastest exact one in ``benchmarks/results/lookup_formulations.json``):
``Clip`` the coordinate to ``[0, S-1]``, ``Cast`` it to int32 (truncation is floor on non-negative
values, so no ``Floor``), then ``GatherElements`` along axis 0 of ``[S, C]`` tables, which picks
``table[s, c]`` per channel without per-channel index offsets. Linear segments gather an intercept and
a slope table with that one index and finish with ``Mul`` + ``Add`` (by the clipped coordinate when
the edge segments are flat, so the clip can reuse the coordinate's buffer); constant segments gather
only the intercept.

Channels elsewhere than last (a convolution's ``[B, C, H, W]``) take one of two layouts, both exact:
* with enough positions per channel (``H * W`` at least ``CHANNELS_FIRST_MIN_POSITIONS`` times the segments), the
  coordinates reshape to ``[B, C, H * W]`` and gather along their last axis from ``[B, C, S]`` tables, which
  ``Expand`` makes from ``[1, C, S]`` at run time: no transposes, and the expanded tables are small beside the data;
* otherwise (few or unknown positions) channels move last (``Transpose``) so the ``[N, C]`` lookup serves.
``benchmarks/lookup_formulations.py`` times both.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lutnet import __version__, metadata
from lutnet.checkpoint import Checkpoint
from lutnet.errors import LutnetError
from lutnet.export.fold import FusedLayer, FusedModel, SegmentTable, exported_checkpoint, fold

DEFAULT_OPSET = 20
MIN_OPSET = 13  # Clip with tensor bounds and GatherElements exist from 11; 13 is the oldest opset tested
GELU_OPSET = 20  # Gelu is an operator from opset 20; below it the exact erf formula is spelled out
# Positions per channel from which a channels-first lookup gathers from tables expanded over the batch instead of
# transposing: the expanded tables then hold at most half as many values as the coordinates.
CHANNELS_FIRST_MIN_POSITIONS = 2


class GraphBuilder:
    """Accumulates nodes and float32 initializers; each method returns the name of the value it produced."""

    def __init__(self, opset: int, prefix: str = "") -> None:
        self.opset = opset
        self.prefix = prefix  # keeps the names of values and initializers apart from those of a graph they are added to
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def constant(self, hint: str, array: np.ndarray, dtype: type = np.float32) -> str:
        name = self.fresh_name(hint)
        self.initializers.append(numpy_helper.from_array(np.array(array, dtype=dtype, order="C"), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, *, output: str | None = None, **attributes: object) -> str:
        output = output or self.fresh_name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output

    def fresh_name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def lookup(self, v: str, table: SegmentTable, layer: int, output: str | None = None) -> str:
        """Evaluate the segment table at coordinates ``v`` of shape ``[N, C]``."""
        return self._lookup(v, table, layer, self.constant, 0, output)

    def lookup_channels_first(self, v: str, table: SegmentTable, layer: int, output: str | None = None) -> str:
        """Evaluate the segment table at coordinates ``v`` of shape ``[B, C, ...]``, gathering along the positions."""
        channels, segments = table.intercept.shape[1], table.segments
        rows = self.op("Reshape", [v, self.constant("shape", np.array([0, channels, -1]), np.int64)])  # (B, C, P)
        shape = self.op("Shape", [v])
        batch = self.op("Slice", [shape, *(self.constant(k, np.array([i]), np.int64) for k, i in (("start", 0), ("end", 1)))])
        expanded = self.op("Concat", [batch, self.constant("table_shape", np.array([channels, segments]), np.int64)], axis=0)

        def tables(hint: str, values: np.ndarray) -> str:  # (S, C) -> (B, C, S)
            return self.op("Expand", [self.constant(hint, values.T[None]), expanded], f"{hint}_per_row")

        y = self._lookup(rows, table, layer, tables, 2, None)
        return self.op("Reshape", [y, shape], output=output)

    def _lookup(self, v: str, table: SegmentTable, layer: int, tables: Callable[[str, np.ndarray], str], axis: int, output: str | None) -> str:
        """Clip, Cast, and GatherElements along ``axis`` of the tables ``tables(hint, [S, C] values)`` names."""
        low = self.constant(f"act{layer}.first_segment", np.array(0.0))
        high = self.constant(f"act{layer}.last_segment", np.array(table.segments - 1.0))
        clipped = self.op("Clip", [v, low, high])
        segment = self.op("Cast", [clipped], f"act{layer}.segment", to=TensorProto.INT32)
        intercept_table = tables(f"act{layer}.intercept", table.intercept)
        if table.slope is None:
            return self.op("GatherElements", [intercept_table, segment], output=output, axis=axis)
        intercept = self.op("GatherElements", [intercept_table, segment], f"act{layer}.intercept_at", axis=axis)
        slope = self.op("GatherElements", [tables(f"act{layer}.slope", table.slope), segment], f"act{layer}.slope_at", axis=axis)
        # Flat edges: the clipped coordinate gives the same values, and v, used by nothing else, is overwritten in place.
        along = clipped if table.flat_edges else v
        return self.op("Add", [self.op("Mul", [along, slope]), intercept], output=output)

    def lookup_along(self, v: str, table: SegmentTable, layer: int, dim: int, rank: int, output: str | None = None,
                     positions: int = 0) -> str:
        """Evaluate the segment table at coordinates ``v`` of any shape with channels on ``dim`` of ``rank``.

        ``positions`` is the number of values per channel and row after ``dim`` (``H * W``), 0 when unknown. Channels on
        axis 1 with enough positions take ``lookup_channels_first``; otherwise the lookup takes ``[N, C]``: channels
        move last (``Transpose``) and the rest flattens into rows, then both undo.
        """
        if (dim, rank) == (1, 2):
            return self.lookup(v, table, layer, output)
        if dim == 1 and positions >= CHANNELS_FIRST_MIN_POSITIONS * table.segments:
            return self.lookup_channels_first(v, table, layer, output)
        perm = [d for d in range(rank) if d != dim] + [dim]
        last = v if dim == rank - 1 else self.op("Transpose", [v], perm=perm)  # (..., C)
        flat = self.op("Reshape", [last, self.constant("shape", np.array([-1, table.intercept.shape[1]]), np.int64)])
        y = self.lookup(flat, table, layer)
        if dim == rank - 1:
            return self.op("Reshape", [y, self.op("Shape", [last])], output=output)
        back = self.op("Reshape", [y, self.op("Shape", [last])])
        return self.op("Transpose", [back], output=output, perm=np.argsort(perm).tolist())

    def activation(self, x: str, layer: FusedLayer, index: int, spatial: tuple[int, int] | None) -> str:
        """The layer's activation of ``x`` (``[B, C]``, or ``[B, C, H, W]`` with ``spatial``), named ``activation_output(index)``."""
        output = activation_output(index)
        if layer.activation == "relu":
            return self.op("Relu", [x], output=output)
        if layer.activation == "gelu":
            return self.gelu(x, output)
        assert layer.table is not None
        positions = 0 if spatial is None else spatial[0] * spatial[1]
        return self.lookup_along(x, layer.table, index, 1, 2 if spatial is None else 4, output, positions)

    def gelu(self, x: str, output: str) -> str:
        if self.opset >= GELU_OPSET:
            return self.op("Gelu", [x], output=output)
        erf = self.op("Erf", [self.op("Mul", [x, self.constant("sqrt_half", np.array(np.sqrt(0.5)))])])
        half_x = self.op("Mul", [x, self.constant("half", np.array(0.5))])
        return self.op("Mul", [half_x, self.op("Add", [erf, self.constant("one", np.array(1.0))])], output=output)

    def layers(self, model: FusedModel, x: str, output: str) -> None:
        """Every hidden layer and the head, from the value ``x`` to the value ``output``."""
        spatial = model.input_shape[1:] if model.family == "convnet" else None
        if model.input_shift is not None:
            shift = model.input_shift.reshape((1, -1) + (1,) * (len(model.input_shape) - 1))
            x = self.op("Sub", [x, self.constant("input_mean", shift)])
        for i, layer in enumerate(model.layers):
            weight, bias = self.constant(f"hidden{i}.weight", layer.weight), self.constant(f"hidden{i}.bias", layer.bias)
            if spatial is None:
                x = self.activation(self.op("Gemm", [x, weight, bias], f"hidden{i}", transB=1), layer, i, None)
                continue
            pad = layer.weight.shape[-1] // 2
            z = self.op("Conv", [x, weight, bias], f"hidden{i}", pads=[pad] * 4)
            x = self.activation(z, layer, i, spatial)
            pool = "MaxPool" if model.pool == "max" else "AveragePool"
            x = self.op(pool, [x], kernel_shape=[2, 2], strides=[2, 2])
            spatial = (spatial[0] // 2, spatial[1] // 2)
        if spatial is not None:
            x = self.op("Flatten", [x], axis=1)
        head_weight, head_bias = self.constant("head.weight", model.head_weight), self.constant("head.bias", model.head_bias)
        self.op("Gemm", [x, head_weight, head_bias], output=output, transB=1)


def build_graph(
    checkpoint: Checkpoint,
    *,
    mode: str | None = None,
    bins_out: int | None = None,
    opset: int = DEFAULT_OPSET,
    card: Mapping[str, str] | None = None,
    builder: type[GraphBuilder] = GraphBuilder,
) -> onnx.ModelProto:
    """The fused model of ``checkpoint`` exported in ``mode`` with ``bins_out`` bins (defaults: as trained).

    ``card`` adds or overrides model-card entries (``lutnet.metadata`` keys). The merge error is not
    known here: it is ``null`` until ``lutnet.export.verify`` measures it. ``builder`` swaps the graph
    formulation (the lookup benchmarks use it).
    """
    check_opset(opset)
    exported = exported_checkpoint(checkpoint, mode, bins_out)
    model = fold(exported)
    graph_builder = builder(opset)
    graph_builder.layers(model, metadata.DEFAULT_INPUT_NAME, metadata.DEFAULT_OUTPUT_NAME)
    graph = helper.make_graph(
        graph_builder.nodes,
        "lutnet_fused",
        [helper.make_tensor_value_info(metadata.DEFAULT_INPUT_NAME, TensorProto.FLOAT, ["batch", *model.input_shape])],
        [helper.make_tensor_value_info(metadata.DEFAULT_OUTPUT_NAME, TensorProto.FLOAT, ["batch", model.num_outputs])],
        graph_builder.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="lutnet", producer_version=__version__)
    proto.ir_version = helper.find_min_ir_version_for(opsets)  # the oldest IR that carries the opset: widest runtime support
    helper.set_model_props(proto, {**model_card(exported), **(card or {})})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def model_card(exported: Checkpoint) -> dict[str, str]:
    """Every ``lutnet.metadata`` key for the exported model (plus the lut keys for LUT models)."""
    spec, info = exported.spec, exported.info
    dataset = info.get("dataset")
    name = dataset.get("name") if isinstance(dataset, dict) else dataset
    card = {
        metadata.MODEL_NAME: str(name or "model"),
        metadata.MODEL_VERSION: "1",
        metadata.TASK: exported.task,
        metadata.INPUT_NAME: metadata.DEFAULT_INPUT_NAME,
        metadata.INPUT_SHAPE: json.dumps([-1, *spec.input_shape]),
        metadata.OUTPUT_NAME: metadata.DEFAULT_OUTPUT_NAME,
        metadata.OUTPUT_SHAPE: json.dumps([-1, spec.num_outputs]),
        metadata.LABELS: json.dumps(list(exported.labels)),
        metadata.FAMILY: spec.family,
        metadata.ACTIVATION: spec.activation,
        metadata.MERGE_MAX_ERROR: "null",
        metadata.SOURCE_SHA256: "",
        metadata.TRAINING_METRICS: json.dumps(info.get("metrics", {})),
        metadata.LUTNET_VERSION: __version__,
    }
    if spec.activation == "lut":
        card |= {metadata.LUT_MODE: spec.lut.mode, metadata.LUT_BINS: str(spec.lut.bins), metadata.LUT_EXTRAPOLATE: spec.lut.extrapolate}
    return card


def set_card_entry(proto: onnx.ModelProto, key: str, value: str) -> None:
    """Replace one model-card entry of a built model."""
    props = {p.key: p.value for p in proto.metadata_props}
    helper.set_model_props(proto, {**props, key: value})


def activation_output(index: int) -> str:
    """Name of the value that holds hidden layer ``index``'s activation (before pooling): verification reads it."""
    return f"activation_{index}"


def check_opset(opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise LutnetError("ONNX opset", expected=f"an integer from {MIN_OPSET} to {newest}", got=opset)
