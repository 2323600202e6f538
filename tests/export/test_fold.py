"""The merge in numpy: segment tables equal the LUT reference; folded layers compute table coordinates."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lutnet.lut import bin_coordinate, lookup
from lutnet.spec import ModelSpec
from lutnet.export.fold import GRIDS, exported_checkpoint, fold, segment_table
from tests.export.checkpoints import mlp_spec, random_checkpoint

finite = st.floats(-10.0, 10.0, allow_nan=False, width=32)


def evaluate(u: np.ndarray, table: np.ndarray, mode: str, extrapolate: str) -> np.ndarray:
    """What the graph computes, in float64: clip, truncate, gather, intercept + v * slope."""
    segments = segment_table(table, mode, extrapolate)
    scale, offset = GRIDS[mode, extrapolate]
    v = scale * u + offset
    index = np.clip(v, 0, segments.segments - 1).astype(np.int64)
    channels = np.arange(table.shape[0])
    slope = 0.0 if segments.slope is None else v * segments.slope[index, channels]
    return segments.intercept[index, channels] + slope


@settings(max_examples=200, deadline=None)
@given(
    table=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(3, 12)), elements=finite),
    mode=st.sampled_from(["linear", "nearest"]),
    extrapolate=st.sampled_from(["clamp", "linear"]),
    data=st.data(),
)
def test_segment_table_equals_lookup(table: np.ndarray, mode: str, extrapolate: str, data: st.DataObject) -> None:
    """Everywhere, including knots, pocket edges and far outside, the segment table is the reference lookup."""
    bins = table.shape[1] - 1
    edges = np.arange(-2, 2 * bins + 5) / 2.0 - 1.0  # every knot and pocket edge, and beyond the range
    random = data.draw(hnp.arrays(np.float64, (64,), elements=st.floats(-1e4, 1e4, allow_nan=False)))
    u = np.concatenate([edges, random])[:, None] * np.ones(table.shape[0])
    difference = np.abs(evaluate(u, table, mode, extrapolate) - lookup(u, table, mode, extrapolate))
    assert np.all(difference <= 1e-12 * (1 + np.abs(u)) * (1 + np.abs(table).max()))


def test_folded_layer_computes_the_coordinate() -> None:
    """The first fused layer maps raw inputs minus the mean to v = scale * (z - lo) / h + offset of the separated model."""
    checkpoint = random_checkpoint(mlp_spec(mode="nearest", extrapolate="linear"), seed=4)
    fused = fold(checkpoint)
    x = np.random.default_rng(0).normal(size=(10, 6)) * 3
    t = checkpoint.tensors
    z = (x - checkpoint.input_mean) / checkpoint.input_std @ t["hidden.0.weight"].T.astype(np.float64) + t["hidden.0.bias"]
    u = bin_coordinate(z, t["act.0.lo"], t["act.0.hi"], checkpoint.spec.lut.bins)
    layer = fused.layers[0]
    np.testing.assert_allclose((x - fused.input_shift) @ layer.weight.T + layer.bias, 2 * u + 2, rtol=1e-9, atol=1e-9)


def test_regression_head_folds_the_target_standardization() -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=5, task="regression")
    fused = fold(checkpoint)
    head = checkpoint.tensors["head.weight"].astype(np.float64)
    np.testing.assert_allclose(fused.head_weight, head * checkpoint.target_std)
    np.testing.assert_allclose(fused.head_bias, checkpoint.tensors["head.bias"] * checkpoint.target_std + checkpoint.target_mean, rtol=1e-6)


def test_exported_checkpoint_resamples_only_when_asked() -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=6)
    assert exported_checkpoint(checkpoint) is checkpoint
    assert exported_checkpoint(checkpoint, "linear", checkpoint.spec.lut.bins) is checkpoint
    resampled = exported_checkpoint(checkpoint, "nearest", 32)
    assert (resampled.spec.lut.mode, resampled.spec.lut.bins) == ("nearest", 32)
    assert resampled.tensors["act.1.table"].shape == (5, 33)
    resampled.validate()
    baseline = random_checkpoint(ModelSpec(family="mlp", input_shape=(3,), num_outputs=2, hidden=(4,), activation="relu"))
    assert exported_checkpoint(baseline, "nearest", 32) is baseline
