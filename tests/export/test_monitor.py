"""The training ranges in the model card and the monitor graph's saturation output, against the numpy reference."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lutnet import metadata, reference
from lutnet.checkpoint import Checkpoint, write_checkpoint
from lutnet.errors import LutnetError
from lutnet.lut import bin_coordinate
from lutnet.ranges import CHECKPOINT_KEY, InputRange, input_range_from_json, tables_from_json
from lutnet.repository import MODEL_FILE, MONITOR_FILE
from lutnet.export.exporter import export_model, export_to_repository
from lutnet.export.graph import build_graph
from lutnet.export.monitor import Coordinate, lookup_coordinates, monitor_graph
from tests.export.checkpoints import mlp_spec, random_checkpoint
from tests.export.test_graph import checkpoints

EDGE = 1e-4  # float32 rounding of a coordinate; pre-activations this close to a table edge may land on either side


def run_monitor(proto: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    output, saturation = session.run([metadata.DEFAULT_OUTPUT_NAME, metadata.SATURATION_OUTPUT], {metadata.DEFAULT_INPUT_NAME: x})
    return output, saturation


def saturation_bounds(checkpoint: Checkpoint, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the reference fraction outside the tables counting pre-activations within ``EDGE`` of an edge as inside, and as outside."""
    bins, low, high = checkpoint.spec.lut.bins, [], []
    for i, (z, _) in enumerate(reference.hidden_layers(checkpoint, x)):
        lo, hi = (np.broadcast_to(checkpoint.tensors[f"act.{i}.{k}"], (z.shape[1],)) for k in ("lo", "hi"))
        u = bin_coordinate(z, lo, hi, bins)
        low.append(np.mean((u < -EDGE * bins) | (u > bins * (1 + EDGE))))
        high.append(np.mean((u < EDGE * bins) | (u > bins * (1 - EDGE))))
    return np.array(low), np.array(high)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoint=checkpoints(), spread=st.floats(0.1, 20.0), seed=st.integers(0, 2**16))
def test_monitor_saturation_equals_reference(checkpoint: Checkpoint, spread: float, seed: int) -> None:
    """For any LUT model and inputs, the monitor graph's saturation is the reference's fraction of u outside [0, K], and its output is the model's."""
    assume(checkpoint.spec.activation == "lut")
    lut = checkpoint.spec.lut
    proto = build_graph(checkpoint)
    monitor = monitor_graph(proto, lookup_coordinates(proto, lut.mode, lut.extrapolate, lut.bins))
    shape = checkpoint.spec.input_shape
    centre = checkpoint.input_mean.reshape((1, -1) + (1,) * (len(shape) - 1))
    x = (centre + np.random.default_rng(seed).normal(0.0, spread, size=(17, *shape))).astype(np.float32)
    output, saturation = run_monitor(monitor, x)
    low, high = saturation_bounds(checkpoint, x)
    assert saturation.shape == (len(checkpoint.spec.hidden),)
    assert np.all(saturation >= low - 1e-6) and np.all(saturation <= high + 1e-6)
    plain = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(output, plain)


def test_reference_saturation_counts_u_outside_the_tables() -> None:
    """Inputs far out saturate every first-layer channel; a baseline has no tables to saturate."""
    checkpoint = random_checkpoint(mlp_spec(), seed=3)
    far = checkpoint.input_mean + 1e4 * checkpoint.input_std
    assert reference.saturation(checkpoint, far[None, :])[0] == 1.0
    relu = dataclasses.replace(checkpoint, spec=dataclasses.replace(checkpoint.spec, activation="relu"))
    assert reference.saturation(relu, far[None, :]).shape == (0,)


def test_monitor_graph_refuses_unknown_values() -> None:
    proto = build_graph(random_checkpoint(mlp_spec(), seed=1))
    with pytest.raises(LutnetError, match="expected a value computed by the graph, got 'nope'"):
        monitor_graph(proto, [Coordinate("nope", 0.0, 1.0)])
    with pytest.raises(LutnetError, match="at least one LUT layer"):
        monitor_graph(proto, [])


def test_card_carries_the_training_ranges(tmp_path: Path) -> None:
    """A checkpoint with an input range exports it and every layer's tables (as exported: resampled bins) into the card."""
    checkpoint = random_checkpoint(mlp_spec(), seed=4)
    samples = np.random.default_rng(0).normal(size=(500, 6))
    checkpoint.info[CHECKPOINT_KEY] = InputRange.of_samples(samples).to_dict()
    write_checkpoint(checkpoint, tmp_path / "ck")
    result = export_model(tmp_path / "ck", bins_out=4, check=False)
    card = {p.key: p.value for p in onnx.load_from_string(result.model).metadata_props}
    input_range = input_range_from_json(card[metadata.INPUT_RANGE], 6)
    assert input_range.percentiles == (0.5, 99.5)
    np.testing.assert_allclose(input_range.lo, np.percentile(samples, 0.5, axis=0), rtol=1e-6)
    np.testing.assert_allclose(input_range.hi, np.percentile(samples, 99.5, axis=0), rtol=1e-6)
    tables = tables_from_json(card[metadata.LUT_TABLES])
    assert [t.knots.shape for t in tables] == [(8, 5), (5, 5)]
    for i, table in enumerate(tables):
        np.testing.assert_array_equal(table.knots.astype(np.float32), result.exported.tensors[f"act.{i}.table"].astype(np.float32))
        np.testing.assert_array_equal(table.lo.astype(np.float32), checkpoint.tensors[f"act.{i}.lo"])


def test_older_checkpoints_export_without_an_input_range(mlp_dir: Path) -> None:
    card = {p.key: p.value for p in onnx.load_from_string(export_model(mlp_dir).model).metadata_props}
    assert metadata.INPUT_RANGE not in card and metadata.LUT_TABLES in card


def test_a_bad_input_range_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=4)
    checkpoint.info[CHECKPOINT_KEY] = {"percentiles": [0.5, 99.5], "lo": [0.0] * 5, "hi": [1.0] * 5}
    write_checkpoint(checkpoint, tmp_path / "ck")
    with pytest.raises(LutnetError, match="expected 6 features"):
        export_model(tmp_path / "ck")


def test_repository_version_holds_the_monitor_graph(mlp_dir: Path, tmp_path: Path) -> None:
    """The monitor graph sits beside model.onnx in the version folder; a baseline gets none."""
    path, result = export_to_repository(mlp_dir, tmp_path / "models", "m")
    assert sorted(p.name for p in path.parent.iterdir()) == [MODEL_FILE, MONITOR_FILE]
    monitor = onnx.load(path.parent / MONITOR_FILE)
    assert [o.name for o in monitor.graph.output] == [metadata.DEFAULT_OUTPUT_NAME, metadata.SATURATION_OUTPUT]
    relu = random_checkpoint(mlp_spec(), seed=2)
    tensors = {name: value for name, value in relu.tensors.items() if not name.startswith("act.")}
    relu = dataclasses.replace(relu, spec=dataclasses.replace(relu.spec, activation="relu"), tensors=tensors)
    write_checkpoint(relu, tmp_path / "relu")
    path, result = export_to_repository(tmp_path / "relu", tmp_path / "models", "r")
    assert result.monitor is None and [p.name for p in path.parent.iterdir()] == [MODEL_FILE]
