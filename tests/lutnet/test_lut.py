"""The numpy reference of the LUT activation: what a table means, checked against first principles."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lutnet.errors import LutnetError
from lutnet.lut import (
    INIT_FUNCTIONS,
    activation_function,
    init_table,
    knot_positions,
    linear_interpolation_bound,
    lut_forward,
    resample_table,
    second_difference_l1,
    table_movement,
)

# max |f''| over the real line, for the interpolation bound of each initial function
MAX_SECOND_DERIVATIVE = {"gelu": 0.8, "silu": 0.5, "tanh": 0.77, "sigmoid": 0.1, "identity": 0.0}


def scalar_lut(x: float, knots: np.ndarray, lo: float, hi: float, mode: str, extrapolate: str) -> float:
    """A deliberately naive one-value evaluation, written from the definition, to test the vectorized one."""
    bins = len(knots) - 1
    step = (hi - lo) / bins
    if x < lo:
        return knots[0] if extrapolate == "clamp" else knots[0] + (x - lo) / step * (knots[1] - knots[0])
    if x > hi:
        return knots[-1] if extrapolate == "clamp" else knots[-1] + (x - hi) / step * (knots[-1] - knots[-2])
    u = (x - lo) / step
    if mode == "nearest":
        return knots[int(np.floor(u + 0.5))]
    k = min(int(np.floor(u)), bins - 1)
    return knots[k] + (u - k) * (knots[k + 1] - knots[k])


@settings(max_examples=60, deadline=None)
@given(
    bins=st.integers(2, 20),
    lo=st.floats(-5, 0),
    width=st.floats(0.5, 8),
    mode=st.sampled_from(["linear", "nearest"]),
    extrapolate=st.sampled_from(["clamp", "linear"]),
    seed=st.integers(0, 2**16),
)
def test_vectorized_lookup_equals_the_definition(bins, lo, width, mode, extrapolate, seed):
    """Every input, inside or far outside the range, evaluates as the one-value definition says."""
    rng = np.random.default_rng(seed)
    knots = rng.normal(size=bins + 1)
    x = np.concatenate([rng.uniform(lo - 3 * width, lo + 4 * width, 50), [lo, lo + width, 1e6, -1e6]])
    got = lut_forward(x[:, None], knots[None], np.array([lo]), np.array([lo + width]), mode, extrapolate)[:, 0]
    want = [scalar_lut(v, knots, lo, lo + width, mode, extrapolate) for v in x]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


def test_per_channel_tables_apply_to_their_own_channel_in_4d():
    """Channel c of a [B, C, H, W] input goes through row c of the table (channel axis 1)."""
    lo, hi = np.array([-1.0, -2.0, 0.0]), np.array([1.0, 2.0, 3.0])
    table = init_table("identity", lo, hi, 4) * np.array([[1.0], [2.0], [-1.0]])
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 3, 4, 5))
    y = lut_forward(x, table, lo, hi, "linear", "linear")
    np.testing.assert_allclose(y, x * np.array([1.0, 2.0, -1.0])[None, :, None, None], atol=1e-12)


def test_shared_table_serves_every_channel():
    table = init_table("relu", np.array([-1.0]), np.array([1.0]), 8)
    x = np.linspace(-3, 3, 12).reshape(2, 6)
    np.testing.assert_allclose(lut_forward(x, table, np.array([-1.0]), np.array([1.0]), "linear", "linear"), np.maximum(x, 0))


def test_clamp_holds_edge_values_and_linear_continues_the_edge_slope():
    """Outside the range nothing is silently zero: clamp holds the edge knot, linear extends the slope."""
    lo, hi = np.array([-1.0]), np.array([1.0])
    table = init_table("identity", lo, hi, 4) + 5.0
    x = np.array([[-10.0], [10.0]])
    np.testing.assert_allclose(lut_forward(x, table, lo, hi, "linear", "clamp")[:, 0], [4.0, 6.0])
    np.testing.assert_allclose(lut_forward(x, table, lo, hi, "linear", "linear")[:, 0], [-5.0, 15.0])
    np.testing.assert_allclose(lut_forward(x, table, lo, hi, "nearest", "linear")[:, 0], [-5.0, 15.0])


@pytest.mark.parametrize("function", sorted(MAX_SECOND_DERIVATIVE))
def test_init_matches_the_function_within_the_interpolation_bound(function):
    lo, hi, bins = np.array([-4.0, -2.0]), np.array([4.0, 6.0]), 32
    table = init_table(function, lo, hi, bins)
    x = np.stack([np.linspace(-4, 4, 1001), np.linspace(-2, 6, 1001)], axis=1)
    error = np.abs(lut_forward(x, table, lo, hi) - activation_function(function)(x)).max(axis=0)
    bound = linear_interpolation_bound(lo, hi, bins, MAX_SECOND_DERIVATIVE[function])
    assert np.all(error <= bound + 1e-12), (error, bound)


@pytest.mark.parametrize("function", ["relu", "leaky_relu", "identity"])
def test_piecewise_linear_functions_are_exact_when_the_kink_is_a_knot(function):
    lo, hi = np.array([-4.0]), np.array([4.0])
    table = init_table(function, lo, hi, 16)
    x = np.linspace(-4, 4, 999)[:, None]
    np.testing.assert_allclose(lut_forward(x, table, lo, hi), activation_function(function)(x), atol=1e-12)


def test_every_documented_init_function_exists():
    assert set(INIT_FUNCTIONS) == {"relu", "gelu", "silu", "tanh", "sigmoid", "identity", "leaky_relu"}
    with pytest.raises(LutnetError, match="expected one of"):
        activation_function("swish")


def test_resampling_onto_a_refined_grid_preserves_the_function_exactly():
    """A grid that contains every old knot represents the same piecewise-linear function."""
    rng = np.random.default_rng(1)
    lo, hi = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    table = rng.normal(size=(2, 9))
    new = resample_table(table, lo, hi, lo, hi, 32, "linear", "linear")
    x = np.stack([np.linspace(-5, 5, 777), np.linspace(-2, 3, 777)], axis=1)
    np.testing.assert_allclose(lut_forward(x, new, lo, hi, "linear", "linear"), lut_forward(x, table, lo, hi, "linear", "linear"), atol=1e-12)


def test_resampling_a_wider_range_keeps_the_linear_extrapolation():
    lo, hi = np.array([-1.0]), np.array([1.0])
    table = init_table("relu", lo, hi, 8)
    new = resample_table(table, lo, hi, np.array([-3.0]), np.array([5.0]), 8, "linear", "linear")
    np.testing.assert_allclose(new[0], np.maximum(knot_positions([-3.0], [5.0], 8)[0], 0.0), atol=1e-12)


def test_second_difference_penalty_is_zero_for_lines_and_counts_kinks():
    assert second_difference_l1(np.array([[0.0, 1.0, 2.0, 3.0]])) == 0.0
    assert second_difference_l1(np.array([[0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0]])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("table", "lo", "hi", "message"),
    [
        (np.zeros((2, 1)), np.zeros(2), np.ones(2), "table shape"),
        (np.zeros((2, 5)), np.zeros(3), np.ones(2), "lo shape"),
        (np.zeros((2, 5)), np.ones(2), np.ones(2), "hi > lo"),
        (np.full((2, 5), np.nan), np.zeros(2), np.ones(2), "finite"),
        (np.zeros((3, 5)), np.zeros(3), np.ones(3), "table rows"),
    ],
)
def test_invalid_tables_are_rejected_with_what_was_expected(table, lo, hi, message):
    with pytest.raises(LutnetError, match=message):
        lut_forward(np.zeros((4, 2)), table, lo, hi)


def test_table_movement_is_zero_at_init_and_relative_l2_after() -> None:
    lo, hi = np.array([-2.0, -1.0]), np.array([2.0, 3.0])
    start = init_table("tanh", lo, hi, 8)
    assert table_movement(start, lo, hi, "tanh") == 0.0
    moved = start + np.random.default_rng(0).normal(size=start.shape)
    assert table_movement(moved, lo, hi, "tanh") == pytest.approx(np.linalg.norm(moved - start) / np.linalg.norm(start))
