"""The learned-shape measures: distance from the init, bends, ReLU-like and non-monotone channels."""
from __future__ import annotations

import numpy as np

from benchmarks.shapes import layer_measures, reading
from lutnet.lut import init_table

BINS = 16
LO, HI = np.array([-2.0, -2.0]), np.array([2.0, 2.0])


def test_untouched_relu_tables_are_relu_like_and_bend_at_zero():
    measures = layer_measures(init_table("relu", LO, HI, BINS), LO, HI, "relu")
    assert measures["distance_mean"] == measures["distance_max"] == 0.0
    assert measures["relu_like_fraction"] == 1.0 and measures["non_monotone_fraction"] == 0.0
    assert measures["bend_median"] == 0.0 and measures["bend_at_zero_fraction"] == 1.0


def test_a_pocket_moves_the_bend_and_counts_as_non_monotone():
    table = init_table("relu", LO, HI, BINS)
    table[1, 12] += 0.8  # a bump of 0.8 on a range of 4: 20% of the range, at x = -2 + 12 * 0.25 = 1.0
    measures = layer_measures(table, LO, HI, "relu")
    assert measures["distance_max"] == np.float64(0.8 / 4.0)
    assert measures["relu_like_fraction"] == 0.5 and measures["non_monotone_fraction"] == 0.5
    assert sorted(measures["bend_iqr"]) == measures["bend_iqr"] and measures["bend_at_zero_fraction"] == 0.5
    assert "50% of the 2 channels stayed" in reading("toy", [measures])
