"""The fused graph against the numpy reference, two ways (onnxruntime and onnx's ReferenceEvaluator), over random specs."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx.reference import ReferenceEvaluator

from lutnet import metadata, reference
from lutnet.checkpoint import Checkpoint
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.fold import exported_checkpoint, fold
from lutnet.export.graph import build_graph
from lutnet.export.verify import EXTREME_TOLERANCE, TOLERANCE, edge_samples, output_scale, probe_inputs, relative_errors, run_fused
from tests.export.checkpoints import CARD_KEYS, LUT_KEYS, convnet_spec, mlp_spec, random_checkpoint


@st.composite
def checkpoints(draw: st.DrawFn) -> Checkpoint:
    family = draw(st.sampled_from(["mlp", "convnet"]))
    lut = LUTSpec(
        bins=draw(st.integers(2, 12)),
        mode=draw(st.sampled_from(["linear", "nearest"])),
        extrapolate=draw(st.sampled_from(["clamp", "linear"])),
        init=draw(st.sampled_from(["relu", "gelu", "tanh", "identity"])),
        shared=draw(st.booleans()),
        range=(draw(st.floats(-6.0, -0.5)), draw(st.floats(0.5, 6.0))),  # around zero, so relu tables are not ~0 everywhere
    )
    hidden = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=2)))
    shape = (draw(st.integers(1, 7)),) if family == "mlp" else (draw(st.integers(1, 3)), draw(st.integers(4, 7)), draw(st.integers(4, 7)))
    spec = ModelSpec(family=family, input_shape=shape, num_outputs=draw(st.integers(1, 4)), hidden=hidden,
                     activation=draw(st.sampled_from(["lut", "lut", "relu", "gelu"])), lut=lut, pool=draw(st.sampled_from(["max", "avg"])))
    task = draw(st.sampled_from(["classification", "regression"]))
    return random_checkpoint(spec, seed=draw(st.integers(0, 2**16)), task=task, standardize=draw(st.booleans()))


def assert_matches_reference(proto: onnx.ModelProto, exported: Checkpoint, x: np.ndarray, typical: int) -> None:
    """onnxruntime and the ReferenceEvaluator both equal the numpy reference (nearest: away from pocket edges)."""
    fused, activations = run_fused(proto, x, len(exported.spec.hidden))
    evaluated = ReferenceEvaluator(proto).run(None, {"input": x})[0]
    expected = reference.forward(exported, x)
    scale = output_scale(expected, typical)
    nearest = exported.spec.activation == "lut" and exported.spec.lut.mode == "nearest"
    edge = edge_samples(fold(exported), x, activations) if nearest else np.zeros(len(x), dtype=bool)
    assert edge.mean() < 0.5
    for outputs in (fused, evaluated):
        assert outputs.dtype == np.float32 and outputs.shape == expected.shape
        errors = np.where(edge, 0.0, relative_errors(outputs, expected, scale))
        assert errors[:typical].max() <= TOLERANCE and errors[typical:].max() <= EXTREME_TOLERANCE


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoint=checkpoints())
def test_fused_graph_equals_reference(checkpoint: Checkpoint) -> None:
    """For any spec, the fused graph computes the separated model, inside and far outside the table ranges."""
    proto = build_graph(checkpoint)
    probes = probe_inputs(checkpoint, count=24)
    assert_matches_reference(proto, checkpoint, probes.all, len(probes.typical))


@settings(max_examples=15, deadline=None)
@given(checkpoint=checkpoints(), mode=st.sampled_from(["linear", "nearest"]), bins=st.integers(2, 20))
def test_resampled_export_equals_resampled_reference(checkpoint: Checkpoint, mode: str, bins: int) -> None:
    """Exporting in another mode or resolution computes the reference of the resampled tables in that mode."""
    if checkpoint.spec.activation != "lut":
        return
    proto = build_graph(checkpoint, mode=mode, bins_out=bins)
    probes = probe_inputs(checkpoint, count=24)
    assert_matches_reference(proto, exported_checkpoint(checkpoint, mode, bins), probes.all, len(probes.typical))


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_gelu_below_opset_20_is_the_erf_formula(opset: int) -> None:
    """Gelu baselines use the Gelu op from opset 20 and the exact erf formula below it."""
    spec = ModelSpec(family="mlp", input_shape=(5,), num_outputs=2, hidden=(7,), activation="gelu")
    checkpoint = random_checkpoint(spec, seed=3)
    proto = build_graph(checkpoint, opset=opset)
    ops = {node.op_type for node in proto.graph.node}
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    probes = probe_inputs(checkpoint, count=16)
    assert_matches_reference(proto, checkpoint, probes.all, len(probes.typical))


@pytest.mark.parametrize("standardize", [False, True])
def test_baselines_are_plain_ops(standardize: bool) -> None:
    """A relu baseline is Gemm/Relu only; standardization adds one Sub of the mean (the scale is in the weights)."""
    spec = ModelSpec(family="mlp", input_shape=(4,), num_outputs=2, hidden=(3, 3), activation="relu")
    relu = build_graph(random_checkpoint(spec, standardize=standardize))
    assert [node.op_type for node in relu.graph.node] == ["Sub"] * standardize + ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]


LOOKUPS = [("linear", "clamp", 2), ("linear", "linear", 2), ("nearest", "clamp", 1), ("nearest", "linear", 2)]


@pytest.mark.parametrize(("mode", "extrapolate", "gathers"), LOOKUPS)
def test_one_lookup_index_per_activation_layer(mode: str, extrapolate: str, gathers: int) -> None:
    """Each LUT layer computes one index (Clip + Cast) and gathers with it from [S, C] tables, no offsets."""
    proto = build_graph(random_checkpoint(mlp_spec(mode=mode, extrapolate=extrapolate)))
    ops = [node.op_type for node in proto.graph.node]
    layers = len(mlp_spec().hidden)
    assert ops.count("Clip") == ops.count("Cast") == layers
    assert ops.count("GatherElements") == gathers * layers
    assert "Floor" not in ops and "Gather" not in ops


@pytest.mark.parametrize(("shape", "bins", "layouts"), [
    ((1, 12, 12), 4, ["channels first", "channels first"]),  # 144 and 36 positions against 5 or 6 segments
    ((1, 12, 12), 20, ["channels first", "channels last"]),  # 144 and 36 positions against 21 or 22 segments
    ((2, 4, 4), 8, ["channels last", "channels last"]),
])
@pytest.mark.parametrize(("mode", "extrapolate"), [("linear", "linear"), ("nearest", "clamp")])
def test_convnet_lookups_take_the_layout_their_map_size_calls_for(shape: tuple[int, ...], bins: int, layouts: list[str], mode: str,
                                                                  extrapolate: str) -> None:
    """A wide feature map gathers along its positions from tables expanded over the batch (no Transpose); a small one
    moves channels last. Both compute the reference model, and a row alone gives what it gives in a batch."""
    spec = ModelSpec(family="convnet", input_shape=shape, num_outputs=3, hidden=(3, 2), lut=LUTSpec(bins=bins, mode=mode, extrapolate=extrapolate))
    checkpoint = random_checkpoint(spec, seed=4)
    proto = build_graph(checkpoint)
    onnx.checker.check_model(proto, full_check=True)
    producers = {out: node for node in proto.graph.node for out in node.output}
    taken = []
    for clip in (node for node in proto.graph.node if node.op_type == "Clip"):  # one per LUT layer, on its coordinates
        reshape = producers[clip.input[0]]
        transposed = reshape.op_type == "Reshape" and producers[reshape.input[0]].op_type == "Transpose"
        taken.append("channels last" if transposed else "channels first")
    assert taken == layouts
    assert ("Expand" in {n.op_type for n in proto.graph.node}) == ("channels first" in layouts)
    probes = probe_inputs(checkpoint, count=8)
    assert_matches_reference(proto, checkpoint, probes.all, len(probes.typical))
    batch, _ = run_fused(proto, probes.all, len(spec.hidden))
    for row in (0, len(probes.all) - 1):  # batch 1 expands the tables to one row
        alone, _ = run_fused(proto, probes.all[row : row + 1], len(spec.hidden))
        np.testing.assert_array_equal(alone[0], batch[row])


@pytest.mark.parametrize("spec", [mlp_spec(), convnet_spec(mode="nearest")], ids=["mlp", "convnet"])
def test_model_is_a_checked_single_float32_file_with_dynamic_batch(spec: ModelSpec) -> None:
    proto = build_graph(random_checkpoint(spec))
    onnx.checker.check_model(proto, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    float_tensors = [t for t in proto.graph.initializer if t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)]
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in float_tensors)
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == metadata.DEFAULT_INPUT_NAME and graph_output.name == metadata.DEFAULT_OUTPUT_NAME
    input_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    output_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert input_dims == ["batch", *spec.input_shape] and output_dims == ["batch", spec.num_outputs]


# Written by the exporters around build_graph (lutnet.export.monitor), and tested there.
RANGE_KEYS = {metadata.INPUT_RANGE, metadata.LUT_TABLES, metadata.SATURATION_BASELINE}


def test_model_card_has_every_key() -> None:
    checkpoint = random_checkpoint(mlp_spec(mode="nearest", extrapolate="clamp"), task="regression")
    proto = build_graph(checkpoint, card={metadata.MODEL_NAME: "housing"})
    card = {p.key: p.value for p in proto.metadata_props}
    assert set(card) == CARD_KEYS - RANGE_KEYS
    assert card[metadata.MODEL_NAME] == "housing" and card[metadata.TASK] == "regression"
    assert json.loads(card[metadata.INPUT_SHAPE]) == [-1, *checkpoint.spec.input_shape]
    assert json.loads(card[metadata.OUTPUT_SHAPE]) == [-1, checkpoint.spec.num_outputs]
    assert (card[metadata.LUT_MODE], card[metadata.LUT_BINS], card[metadata.LUT_EXTRAPOLATE]) == ("nearest", "8", "clamp")
    assert json.loads(card[metadata.TRAINING_METRICS]) == checkpoint.info["metrics"]


def test_baseline_card_has_no_lut_keys() -> None:
    proto = build_graph(random_checkpoint(ModelSpec(family="mlp", input_shape=(4,), num_outputs=2, hidden=(3,), activation="relu")))
    assert {p.key for p in proto.metadata_props} == CARD_KEYS - LUT_KEYS - RANGE_KEYS


def test_linear_clamp_multiplies_by_the_clipped_coordinate_so_infinite_coordinates_give_the_edge_values() -> None:
    """With flat edge segments the graph multiplies by the clipped coordinate: the same values, and an overflowing
    first layer (an infinite coordinate) still gives the clamped edge value where ``inf * 0`` would give NaN."""
    checkpoint = random_checkpoint(mlp_spec(mode="linear", extrapolate="clamp"), standardize=False)
    proto = build_graph(checkpoint)
    muls = [node for node in proto.graph.node if node.op_type == "Mul"]
    clips = {node.output[0] for node in proto.graph.node if node.op_type == "Clip"}
    assert muls and all(node.input[0] in clips for node in muls)
    x = np.full((2, checkpoint.spec.input_shape[0]), 3e38, dtype=np.float32)
    x[1] *= -1
    output, activations = run_fused(proto, x, len(checkpoint.spec.hidden))
    assert np.isfinite(output).all() and all(np.isfinite(a).all() for a in activations)
    linear = build_graph(random_checkpoint(mlp_spec(mode="linear", extrapolate="linear")))  # linear edges need the unclipped v
    linear_clips = {node.output[0] for node in linear.graph.node if node.op_type == "Clip"}
    assert not any(node.input[0] in linear_clips for node in linear.graph.node if node.op_type == "Mul")
