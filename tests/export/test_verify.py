"""Verification: passes faithful exports, fails broken ones by a stated amount, honours the nearest bound."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from lutnet import reference
from lutnet.checkpoint import Checkpoint
from lutnet.errors import LutnetError
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.fold import exported_checkpoint, fold
from lutnet.export.graph import build_graph
from lutnet.export.verify import (
    TOLERANCE, Probes, Verification, choose_bins, edge_samples, output_scale, probe_inputs, relative_errors, run_fused, smallest_bins, verify,
)
from tests.export.checkpoints import convnet_spec, mlp_spec, random_checkpoint


def wide_spec(mode: str) -> ModelSpec:
    return ModelSpec(family="mlp", input_shape=(32,), num_outputs=10, hidden=(128, 128), lut=LUTSpec(bins=64, mode=mode, extrapolate="clamp"))


def verify_nearest(checkpoint: Checkpoint, bins: int, probes: Probes, max_error: float | None = None) -> Verification:
    proto = build_graph(checkpoint, mode="nearest", bins_out=bins)
    return verify(proto, checkpoint, exported_checkpoint(checkpoint, "nearest", bins), probes, max_error=max_error)


@pytest.mark.parametrize("spec", [mlp_spec(), mlp_spec(extrapolate="clamp"), convnet_spec(), convnet_spec(mode="nearest")], ids=str)
def test_faithful_export_passes(spec: ModelSpec) -> None:
    checkpoint = random_checkpoint(spec, seed=7)
    result = verify(build_graph(checkpoint), checkpoint, checkpoint, probe_inputs(checkpoint))
    assert result.passed, result.failures
    assert result.fidelity <= TOLERANCE and result.class_agreement == 1.0
    assert result.samples == 256 + 1 + 3 * 64


def test_broken_table_fails_and_says_by_how_much() -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=8)
    proto = build_graph(checkpoint)
    intercept = next(t for t in proto.graph.initializer if "intercept" in t.name)
    values = onnx.numpy_helper.to_array(intercept).copy()
    values[len(values) // 2] += 0.5  # one segment of every channel, in the middle of the range
    intercept.CopyFrom(onnx.numpy_helper.from_array(values, intercept.name))
    result = verify(proto, checkpoint, checkpoint, probe_inputs(checkpoint))
    assert not result.passed
    assert result.fidelity > 100 * TOLERANCE
    assert f"{result.fidelity:.3g}" in result.failures[0] and "typical" in result.failures[0]


def test_nearest_pocket_edges_explain_every_mismatch() -> None:
    """In a wide nearest model float32 rounding crosses pocket edges; every sample it changes is flagged as an edge sample."""
    checkpoint = random_checkpoint(wide_spec("nearest"), seed=1)
    proto = build_graph(checkpoint)
    probes = probe_inputs(checkpoint, count=2000)
    fused, activations = run_fused(proto, probes.all, 2)
    expected = reference.forward(checkpoint, probes.all)
    mismatch = relative_errors(fused, expected, output_scale(expected, len(probes.typical))) > TOLERANCE
    edge = edge_samples(fold(checkpoint), probes.all, activations)
    assert mismatch.any() and not (mismatch & ~edge).any()
    assert edge.mean() < 0.2
    assert verify(proto, checkpoint, checkpoint, probes).passed


def test_max_error_picks_the_smallest_resolution_and_is_honoured() -> None:
    checkpoint = random_checkpoint(wide_spec("linear"), seed=2, task="regression")
    probes = probe_inputs(checkpoint)
    bins = choose_bins(checkpoint, "nearest", 0.02, probes)
    assert bins > 64 and bins % 64 == 0
    result = verify_nearest(checkpoint, bins, probes, max_error=0.02)
    assert result.passed and 0 < result.deviation <= 0.02
    coarser = verify_nearest(checkpoint, bins // 2, probes, max_error=0.02)
    assert not coarser.passed and "exceeds --max-error 0.02" in coarser.failures[0]


def test_unreachable_max_error_names_the_best_deviation() -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=3)
    with pytest.raises(LutnetError, match="best deviation"):
        choose_bins(checkpoint, "nearest", 1e-9, probe_inputs(checkpoint, count=16))


def test_class_disagreement_fails() -> None:
    checkpoint = random_checkpoint(wide_spec("linear"), seed=3)
    result = verify_nearest(checkpoint, 2, probe_inputs(checkpoint))
    assert any("predicted classes agree" in failure for failure in result.failures)


def test_given_data_are_the_typical_inputs() -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=4)
    data = np.random.default_rng(0).normal(size=(50, 6))
    probes = probe_inputs(checkpoint, data)
    np.testing.assert_array_equal(probes.typical, data.astype(np.float32))
    assert np.abs(probes.extreme).max() > 1e3 * checkpoint.input_std.max() and not probes.extreme[0].any()
    with pytest.raises(LutnetError, match="verification data shape"):
        probe_inputs(checkpoint, np.zeros((5, 7)))
    with pytest.raises(LutnetError, match="verification data: expected finite numbers"):
        probe_inputs(checkpoint, np.full((5, 6), np.nan))


def test_non_finite_outputs_fail() -> None:
    assert relative_errors(np.array([[np.nan, 0.0]]), np.zeros((1, 2)), np.ones(1))[0] == np.inf


def test_the_bins_chosen_for_max_error_also_keep_the_classes() -> None:
    """A resolution that meets --max-error but flips too many predicted classes is passed over for a finer one."""
    checked = []

    def check(bins: int) -> tuple[float, bool]:
        checked.append(bins)
        return 1e-4, bins >= 64  # within the error from the start; the classes agree from 64 bins on

    assert smallest_bins(16, check, max_error=1e-3) == 64 and checked == [16, 32, 64]
    with pytest.raises(LutnetError, match="predicted classes agreed on less than 99.9%"):
        smallest_bins(16, lambda bins: (1e-4, False), max_error=1e-3)
