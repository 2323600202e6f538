"""Parameter matching of the accuracy suite: every lutnet model lands within +-5% of its data set's budget."""
from __future__ import annotations

import pytest

from benchmarks.accuracy import BUDGETS, DEPTH, TRAINED_MODELS, lutnet_width
from lutnet.training.data import load_dataset
from lutnet.training.trainer import TrainConfig

CASES = [(dataset, model) for dataset in BUDGETS for model in TRAINED_MODELS]


def mlp_parameters(inputs: int, width: int, outputs: int, activation: str, bins: int) -> int:
    """Trainable parameters of a two-hidden-layer MLP counted by hand: weights, biases and (K+1)-knot tables."""
    tables = DEPTH * width * (bins + 1) if activation == "lut" else 0
    return inputs * width + width + width * width + width + width * outputs + outputs + tables


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name) for name in BUDGETS}


@pytest.mark.parametrize(("dataset", "model"), CASES)
def test_width_meets_the_budget_and_counts_tables(datasets, dataset, model):
    data = datasets[dataset]
    activation = TRAINED_MODELS[model]["activation"]
    width, params = lutnet_width(data, TRAINED_MODELS[model], BUDGETS[dataset])
    outputs = len(data.labels) if data.task == "classification" else 1
    assert params == mlp_parameters(data.input_shape[0], width, outputs, activation, bins=TRAINED_MODELS[model].get("bins", TrainConfig().bins))
    assert abs(params - BUDGETS[dataset]) <= 0.05 * BUDGETS[dataset]


def test_fewer_bins_buy_a_wider_lut_model(datasets):
    data = datasets["digits"]
    narrow, _ = lutnet_width(data, {"activation": "lut", "bins": 64}, BUDGETS["digits"])
    wide, params = lutnet_width(data, {"activation": "lut", "bins": 16}, BUDGETS["digits"])
    assert wide > narrow
    assert params == mlp_parameters(64, wide, 10, "lut", bins=16)
