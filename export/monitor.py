"""What the service watches in a model: the training ranges in its card, and the monitor graph that measures table saturation.

The monitor graph is the fused graph with one more output, ``lut_saturation`` ``[L]``: per LUT layer, the
fraction of the batch's pre-activations that fall outside the layer's tables (table coordinate ``u``
outside ``[0, K]``). The fused graph computes each lookup's coordinate ``v = scale * u + offset``
directly (``lutnet.export.fold.GRIDS``), so saturation is ``v`` outside ``[offset, scale * K + offset]``:
two comparisons and a mean per layer on values the graph already has.

``range_card`` and ``monitor_graph`` take plain arrays and value names, so any exporter (checkpoints
here, a user's own torch module elsewhere) writes the same card entries and the same monitor graph.
"""
from __future__ import annotations

import json

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lutnet import metadata
from lutnet.checkpoint import Checkpoint
from lutnet.errors import LutnetError
from lutnet.ranges import InputRange, LayerTable, input_range_to_json, tables_to_json
from lutnet.export.fold import GRIDS

# GraphBuilder.lookup clips each coordinate against an initializer named act{layer}.first_segment_{n}.
_LOOKUP_CLIP = re.compile(r"act(\d+)\.first_segment_\d+")


@dataclass(frozen=True)
class Coordinate:
    """A graph value holding one LUT layer's table coordinates, and the bounds of the trained range in that value."""

    value: str
    low: float
    high: float


def range_card(input_range: InputRange | None, tables: Sequence[LayerTable]) -> dict[str, str]:
    """Model-card entries for the training ranges: the inputs' (when known) and every LUT layer's tables (when any)."""
    card = {}
    if input_range is not None:
        card[metadata.INPUT_RANGE] = input_range_to_json(input_range)
    if tables:
        card[metadata.LUT_TABLES] = tables_to_json(list(tables))
    return card


def checkpoint_tables(exported: Checkpoint) -> list[LayerTable]:
    """The tables of every LUT layer of an exported checkpoint (none for a baseline)."""
    if exported.spec.activation != "lut":
        return []
    return [LayerTable(*(np.asarray(exported.tensors[f"act.{i}.{k}"]) for k in ("table", "lo", "hi"))) for i in range(len(exported.spec.hidden))]


def lookup_coordinates(proto: onnx.ModelProto, mode: str, extrapolate: str, bins: int) -> list[Coordinate]:
    """The coordinate of every lookup in a graph built by ``lutnet.export.graph``, first layer first."""
    scale, offset = GRIDS[mode, extrapolate]
    found = {}
    for node in proto.graph.node:
        match = _LOOKUP_CLIP.fullmatch(node.input[1]) if node.op_type == "Clip" and len(node.input) > 1 else None
        if match is not None:
            found[int(match[1])] = Coordinate(node.input[0], offset, scale * bins + offset)
    return [found[layer] for layer in sorted(found)]


def saturation_baseline(monitor: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, str]:
    """The card entry of each layer's saturation on ``feeds`` (the data the model was exported with), run by onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(monitor.SerializeToString(), providers=["CPUExecutionProvider"])
    ratios = session.run([metadata.SATURATION_OUTPUT], feeds)[0]
    return {metadata.SATURATION_BASELINE: json.dumps([round(float(r), 6) for r in ratios])}


def monitor_graph(proto: onnx.ModelProto, coordinates: Sequence[Coordinate]) -> onnx.ModelProto:
    """A copy of ``proto`` with the extra output ``lut_saturation`` ``[len(coordinates)]``: per layer, the fraction of
    its coordinates outside ``[low, high]`` (NaN counts as inside, as comparisons with it are false)."""
    if not coordinates:
        raise LutnetError("monitor graph", expected="at least one LUT layer coordinate", got="none")
    monitor = onnx.ModelProto()
    monitor.CopyFrom(proto)
    graph, names = monitor.graph, {name for node in monitor.graph.node for name in node.output}
    fractions = []
    for layer, coordinate in enumerate(coordinates):
        if coordinate.value not in names:
            raise LutnetError(f"coordinate of LUT layer {layer}", expected="a value computed by the graph", got=repr(coordinate.value))
        fractions.append(_outside_fraction(graph, coordinate, f"saturation{layer}"))
    graph.node.append(helper.make_node("Concat", fractions, [metadata.SATURATION_OUTPUT], name=metadata.SATURATION_OUTPUT, axis=0))
    graph.output.append(helper.make_tensor_value_info(metadata.SATURATION_OUTPUT, TensorProto.FLOAT, [len(coordinates)]))
    onnx.checker.check_model(monitor, full_check=True)
    return monitor


def _outside_fraction(graph: onnx.GraphProto, coordinate: Coordinate, prefix: str) -> str:
    """Nodes computing the fraction of ``coordinate.value`` outside its bounds as a ``[1]`` tensor; returns its name."""
    constants = {"low": np.array(coordinate.low, np.float32), "high": np.array(coordinate.high, np.float32), "shape": np.array([1], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(value, f"{prefix}.{name}") for name, value in constants.items())
    steps = [
        ("Less", [coordinate.value, f"{prefix}.low"], "below", {}),
        ("Greater", [coordinate.value, f"{prefix}.high"], "above", {}),
        ("Or", [f"{prefix}.below", f"{prefix}.above"], "outside", {}),
        ("Cast", [f"{prefix}.outside"], "outside_float", {"to": TensorProto.FLOAT}),
        ("ReduceMean", [f"{prefix}.outside_float"], "mean", {"keepdims": 0}),
        ("Reshape", [f"{prefix}.mean", f"{prefix}.shape"], "fraction", {}),
    ]
    for op, inputs, output, attributes in steps:
        graph.node.append(helper.make_node(op, inputs, [f"{prefix}.{output}"], name=f"{prefix}.{output}", **attributes))
    return f"{prefix}.fraction"
