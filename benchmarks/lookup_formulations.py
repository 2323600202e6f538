"""Equivalent ONNX formulations of the segment-table lookup, timed in onnxruntime and checked for exactness.

Run ``python -m benchmarks.lookup_formulations [--quick]``; writes ``benchmarks/results/lookup_formulations.json``.
Every candidate builds the whole reference model (64 -> 256 -> 256 -> 10, K = 64) through
``lutnet.export.graph.build_graph`` with its own ``lookup``; the rest of the graph is identical. The
candidate ``gather_elements_int32`` is what ``lutnet.export.graph.GraphBuilder`` ships. Convnet candidates
(28x28 maps) differ in how channels-first coordinates reach the tables; ``GraphBuilder`` ships
``channels_first_expanded_gather_elements_int32`` on maps with enough positions.
"""
from __future__ import annotations

import argparse

import numpy as np
from onnx import TensorProto, helper

from benchmarks.common import write_results
from benchmarks.export_speed import CONVNETS, REFERENCE_SHAPE, inputs, interleaved, onnx_runner, synthetic_checkpoint, variant
from lutnet.export.fold import FusedLayer, SegmentTable
from lutnet.export.graph import DEFAULT_OPSET, GraphBuilder, activation_output, build_graph
from lutnet.spec import ModelSpec
from lutnet.export.verify import probe_inputs, verify


def clipped_segment(builder: GraphBuilder, v: str, table: SegmentTable, index_type: int = TensorProto.INT32) -> str:
    """The segment index of coordinates ``v``: Clip to ``[0, S-1]``, Cast to ``index_type``."""
    low, high = builder.constant("low", np.array(0.0)), builder.constant("high", np.array(table.segments - 1.0))
    return builder.op("Cast", [builder.op("Clip", [v, low, high])], to=index_type)


class Candidate(GraphBuilder):
    """A lookup as (index of each coordinate, gather of a ``[S, C]`` table at that index); int64 GatherElements by default."""

    index_type = TensorProto.INT64

    def segment(self, v: str, table: SegmentTable) -> str:
        return clipped_segment(self, v, table, self.index_type)

    def index(self, v: str, table: SegmentTable) -> str:
        return self.segment(v, table)

    def gather(self, values: np.ndarray, index: str, output: str | None = None) -> str:
        return self.op("GatherElements", [self.constant("table", values), index], output=output, axis=0)

    def lookup(self, v: str, table: SegmentTable, layer: int, output: str | None = None) -> str:
        index = self.index(v, table)
        if table.slope is None:
            return self.gather(table.intercept, index, output)
        intercept, slope = self.gather(table.intercept, index), self.gather(table.slope, index)
        return self.op("Add", [self.op("Mul", [v, slope]), intercept], output=output)


class MinMaxInt32(Candidate):
    """Max + Min instead of Clip."""

    index_type = TensorProto.INT32

    def segment(self, v: str, table: SegmentTable) -> str:
        low, high = self.constant("low", np.array(0.0)), self.constant("high", np.array(table.segments - 1.0))
        return self.op("Cast", [self.op("Min", [self.op("Max", [v, low]), high])], to=self.index_type)


class FloorThenCastInt32(Candidate):
    """Floor before Cast (unneeded: Cast truncates, which is floor on the clipped, non-negative coordinate)."""

    index_type = TensorProto.INT32

    def segment(self, v: str, table: SegmentTable) -> str:
        low, high = self.constant("low", np.array(0.0)), self.constant("high", np.array(table.segments - 1.0))
        return self.op("Cast", [self.op("Floor", [self.op("Clip", [v, low, high])])], to=self.index_type)


class FlatGather(Candidate):
    """Gather from flat channel-major tables ``[C*S]`` with offsets ``c*S`` added to the index (the straightforward graph)."""

    def index(self, v: str, table: SegmentTable) -> str:
        offsets = np.arange(table.intercept.shape[1]) * table.segments
        dtype = np.int64 if self.index_type == TensorProto.INT64 else np.int32
        return self.op("Add", [self.segment(v, table), self.constant("offsets", offsets, dtype)])

    def gather(self, values: np.ndarray, index: str, output: str | None = None) -> str:
        return self.op("Gather", [self.constant("table", values.T.reshape(-1)), index], output=output, axis=0)


class FlatGatherInt32(FlatGather):
    index_type = TensorProto.INT32


class FlatGatherPairsInt32(FlatGatherInt32):
    """One Gather of (intercept, slope) pairs from ``[C*S, 2]``, then Split and Squeeze."""

    def lookup(self, v: str, table: SegmentTable, layer: int, output: str | None = None) -> str:
        if table.slope is None:
            return super().lookup(v, table, layer, output)
        pairs = np.stack([table.intercept.T.reshape(-1), table.slope.T.reshape(-1)], axis=-1)  # (C*S, 2)
        gathered = self.op("Gather", [self.constant("pairs", pairs), self.index(v, table)], axis=0)  # (N, C, 2)
        intercept, slope = self.fresh_name("intercept"), self.fresh_name("slope")
        self.nodes.append(helper.make_node("Split", [gathered], [intercept, slope], axis=-1, num_outputs=2))
        axis = self.constant("axis", np.array([-1]), np.int64)
        intercept, slope = (self.op("Squeeze", [name, axis]) for name in (intercept, slope))
        return self.op("Add", [self.op("Mul", [v, slope]), intercept], output=output)


class PackedPairsBitCast(Candidate):
    """One GatherElements of uint64 words holding the (intercept, slope) float32 bits, split by bit operations.

    Halves the gathers; ``BitCast`` needs opset 26. Low word: ``BitwiseAnd``, ``Cast`` to uint32, ``BitCast``; high
    word: ``BitShift``, ``Cast``, ``BitCast``.
    """

    index_type = TensorProto.INT32
    opset = 26

    def lookup(self, v: str, table: SegmentTable, layer: int, output: str | None = None) -> str:
        if table.slope is None:
            return super().lookup(v, table, layer, output)
        intercept_bits = table.intercept.astype(np.float32).view(np.uint32).astype(np.uint64)
        slope_bits = table.slope.astype(np.float32).view(np.uint32).astype(np.uint64)
        words = self.gather(intercept_bits | (slope_bits << np.uint64(32)), self.index(v, table))
        low = self.op("BitwiseAnd", [words, self.constant("low_word", np.array(0xFFFFFFFF), np.uint64)])
        high = self.op("BitShift", [words, self.constant("word_bits", np.array(32), np.uint64)], direction="RIGHT")
        intercept, slope = (self.op("BitCast", [self.op("Cast", [half], to=TensorProto.UINT32)], to=TensorProto.FLOAT) for half in (low, high))
        return self.op("Add", [self.op("Mul", [v, slope]), intercept], output=output)

    def gather(self, values: np.ndarray, index: str, output: str | None = None) -> str:
        dtype = np.uint64 if values.dtype == np.uint64 else np.float32
        return self.op("GatherElements", [self.constant("table", values, dtype), index], output=output, axis=0)


class SegmentMajorInt32(FlatGatherInt32):
    """Flat segment-major tables ``[S*C]``: index ``s*C + c`` costs a Mul and an Add."""

    def index(self, v: str, table: SegmentTable) -> str:
        channels = table.intercept.shape[1]
        stride, ids = self.constant("stride", np.array(channels), np.int32), self.constant("ids", np.arange(channels), np.int32)
        return self.op("Add", [self.op("Mul", [self.segment(v, table), stride]), ids])

    def gather(self, values: np.ndarray, index: str, output: str | None = None) -> str:
        return self.op("Gather", [self.constant("table", values.reshape(-1)), index], output=output, axis=0)


class GatherND(Candidate):
    """GatherND on ``[C, S]`` tables with (channel, segment) index pairs built in the graph."""

    def index(self, v: str, table: SegmentTable) -> str:
        segment = self.op("Unsqueeze", [self.segment(v, table), self.constant("axis", np.array([-1]), np.int64)])
        ids = self.constant("ids", np.arange(table.intercept.shape[1]).reshape(1, -1, 1), np.int64)
        return self.op("Concat", [self.op("Expand", [ids, self.op("Shape", [segment])]), segment], axis=-1)

    def gather(self, values: np.ndarray, index: str, output: str | None = None) -> str:
        return self.op("GatherND", [self.constant("table", values.T), index], output=output)


class FloatOffsets(FlatGatherInt32):
    """Per-channel offsets added to the float coordinate (as if folded into the bias): no int Add, but inexact.

    Far from zero the float32 coordinate keeps fewer fraction bits, so ``intercept + v*slope`` at ``v`` near
    ``C*S`` is off by about ``C*S * 2^-24`` of a segment times the slope; the error columns show it.
    """

    def lookup(self, v: str, table: SegmentTable, layer: int, output: str | None = None) -> str:
        offsets = np.arange(table.intercept.shape[1]) * table.segments
        shifted = self.op("Add", [v, self.constant("offsets", offsets)])
        low, high = self.constant("low", offsets), self.constant("high", offsets + table.segments - 1.0)
        index = self.op("Cast", [self.op("Min", [self.op("Max", [shifted, low]), high])], to=self.index_type)
        if table.slope is None:
            return self.gather(table.intercept, index, output)
        intercept = self.gather(table.intercept - offsets * table.slope, index)  # each line rewritten in v + offset
        return self.op("Add", [self.op("Mul", [shifted, self.gather(table.slope, index)]), intercept], output=output)


class ChannelsLast(GraphBuilder):
    """Convnets: channels moved last around the ``[N, C]`` lookup (Transpose, Reshape, and back) at every map size."""

    def lookup_along(self, v: str, table: SegmentTable, layer: int, dim: int, rank: int, output: str | None = None,
                     positions: int = 0) -> str:
        return super().lookup_along(v, table, layer, dim, rank, output, positions=0)


class ConvTiled(GraphBuilder):
    """Convnets: GatherElements straight on ``[B, C, H, W]`` indices from tables tiled to ``[S, C, H, W]`` (no transposes)."""

    def activation(self, x: str, layer: FusedLayer, index: int, spatial: tuple[int, int] | None) -> str:
        if spatial is None or layer.table is None:
            return super().activation(x, layer, index, spatial)
        table, output = layer.table, activation_output(index)
        segment = clipped_segment(self, x, table)
        tiled = lambda values: np.broadcast_to(values[:, :, None, None], (*values.shape, *spatial))  # noqa: E731
        gather = lambda values, out=None: self.op("GatherElements", [self.constant("table", tiled(values)), segment], output=out, axis=0)  # noqa: E731
        if table.slope is None:
            return gather(table.intercept, output)
        return self.op("Add", [self.op("Mul", [x, gather(table.slope)]), gather(table.intercept)], output=output)


class ConvFlatOffsets(GraphBuilder):
    """Convnets: Gather from flat ``[C*S]`` tables with int32 offsets ``c*S`` broadcast over ``[C, 1, 1]``."""

    def activation(self, x: str, layer: FusedLayer, index: int, spatial: tuple[int, int] | None) -> str:
        if spatial is None or layer.table is None:
            return super().activation(x, layer, index, spatial)
        table, output = layer.table, activation_output(index)
        offsets = self.constant("offsets", (np.arange(table.intercept.shape[1]) * table.segments).reshape(-1, 1, 1), np.int32)
        segment = self.op("Add", [clipped_segment(self, x, table), offsets])
        gather = lambda values, out=None: self.op("Gather", [self.constant("table", values.T.reshape(-1)), segment], output=out, axis=0)  # noqa: E731
        if table.slope is None:
            return gather(table.intercept, output)
        return self.op("Add", [self.op("Mul", [x, gather(table.slope)]), gather(table.intercept)], output=output)


CONV_CANDIDATES: dict[str, type[GraphBuilder]] = {
    "channels_first_expanded_gather_elements_int32": GraphBuilder,
    "channels_last_gather_elements_int32": ChannelsLast,
    "tiled_gather_elements_int32": ConvTiled,
    "flat_offsets_gather_int32": ConvFlatOffsets,
}


CANDIDATES: dict[str, type[GraphBuilder]] = {
    "gather_elements_int32": GraphBuilder,
    "gather_elements_int64": Candidate,
    "gather_elements_int32_min_max": MinMaxInt32,
    "gather_elements_int32_floor_cast": FloorThenCastInt32,
    "gather_flat_offsets_int64": FlatGather,
    "gather_flat_offsets_int32": FlatGatherInt32,
    "gather_flat_pairs_int32": FlatGatherPairsInt32,
    "gather_elements_packed_pairs_bitcast": PackedPairsBitCast,
    "gather_segment_major_int32": SegmentMajorInt32,
    "gather_nd_int64": GatherND,
    "gather_float_offsets_int32": FloatOffsets,
}


def compare(
    spec: ModelSpec, candidates: dict[str, type[GraphBuilder]], mode: str, extrapolate: str, batches: tuple[int, ...], rounds: int
) -> dict[str, object]:
    """Latency ratio to the ReLU model and measured exactness of every candidate for one lookup."""
    checkpoint = synthetic_checkpoint(variant(spec, "lut", mode, extrapolate))
    relu = build_graph(synthetic_checkpoint(variant(spec, "relu")))
    protos = {name: build_graph(checkpoint, builder=builder, opset=getattr(builder, "opset", DEFAULT_OPSET)) for name, builder in candidates.items()}
    probes = probe_inputs(checkpoint)
    exactness = {name: verify(proto, checkpoint, checkpoint, probes) for name, proto in protos.items()}
    table: dict[str, dict[str, object]] = {
        name: {"nodes": len(proto.graph.node), "max_error_typical": result.fidelity, "max_error_extreme": result.extreme_fidelity, "exact": result.passed}
        for name, (proto, result) in ((n, (protos[n], exactness[n])) for n in protos)
    }
    for batch in batches:
        x = inputs(spec, batch)
        runners = {"relu": onnx_runner(relu, 1, x)} | {name: onnx_runner(proto, 1, x) for name, proto in protos.items()}
        timings = interleaved(runners, batch, rounds)
        for name in protos:
            table[name][f"batch_{batch}"] = {
                "median_s": timings[name]["median"],
                "p10_s": timings[name]["p10"],
                "ratio_to_relu": timings[name]["median"] / timings["relu"]["median"],
                "ratio_to_relu_p10": timings[name]["p10"] / timings["relu"]["p10"],
            }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lookup_formulations", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, noisier)")
    args = parser.parse_args(argv)
    rounds = 10 if args.quick else 40
    # nearest with clamp gathers intercepts only; every other lookup gathers intercepts and slopes like linear mode
    lookups = (("nearest", "clamp"), ("linear", "linear"))
    mlp = {f"{mode}_{extrapolate}": compare(REFERENCE_SHAPE, CANDIDATES, mode, extrapolate, (1, 1024), rounds) for mode, extrapolate in lookups}
    convnet_spec = CONVNETS["convnet_28x28"]
    convnet = {f"{mode}_{extrapolate}": compare(convnet_spec, CONV_CANDIDATES, mode, extrapolate, (1, 32), rounds) for mode, extrapolate in lookups}
    for title, results in (("mlp", mlp), ("convnet", convnet)):
        for lookup, table in results.items():
            print(f"{title} {lookup}:")
            for name, row in sorted(table.items(), key=lambda item: item[1]["batch_1"]["ratio_to_relu_p10"]):  # type: ignore[index]
                batches = {key: v for key, v in row.items() if key.startswith("batch_")}  # type: ignore[union-attr]
                timings = " ".join(f"{key} median {v['ratio_to_relu']:.2f}x p10 {v['ratio_to_relu_p10']:.2f}x" for key, v in batches.items())
                print(f"  {name:<36} exact={row['exact']!s:<5} {timings}")
    path = write_results("lookup_formulations", {
        "threads": 1,
        "rounds": rounds,
        "mlp": {"shape": REFERENCE_SHAPE.to_dict(), "shipped": "gather_elements_int32", "candidates": mlp},
        "convnet": {"shape": convnet_spec.to_dict(), "shipped": "channels_first_expanded_gather_elements_int32", "candidates": convnet},
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
