"""Parameter matching of the accuracy suite: every lutnet model lands within +-5% of its data set's budget."""
from __future__ import annotations

import pytest

from benchmarks.accuracy import (BUDGETS, CONVNET_BUDGETS, DEPTH, LUTNET_MODELS, TRAINED_MODELS, budget_of, dataset_key, lutnet_width, onnx_output,
                                 train_and_export)
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


def convnet_parameters(channels_in: int, side: int, width: int, outputs: int, activation: str, bins: int) -> int:
    """Trainable parameters of two 3x3 conv blocks of ``width`` channels (each halving the side) and a Linear head, by hand."""
    tables = DEPTH * width * (bins + 1) if activation == "lut" else 0
    head = width * (side // 4) ** 2 * outputs + outputs
    return channels_in * width * 9 + width + width * width * 9 + width + head + tables


@pytest.mark.parametrize("model", list(TRAINED_MODELS))
@pytest.mark.parametrize("dataset", list(CONVNET_BUDGETS))
def test_convnet_channels_meet_the_convnet_budget_and_count_tables(datasets, dataset, model):
    overrides = {**TRAINED_MODELS[model], "model": "convnet"}
    width, params = lutnet_width(datasets[dataset], overrides, CONVNET_BUDGETS[dataset])
    channels, side, _ = datasets[dataset].image_shape
    assert params == convnet_parameters(channels, side, width, 10, overrides["activation"], bins=TrainConfig().bins)
    assert abs(params - CONVNET_BUDGETS[dataset]) <= 0.05 * CONVNET_BUDGETS[dataset]


def test_convnet_results_are_named_apart_from_the_mlp_results():
    assert dataset_key("mnist5k", "mlp") == "mnist5k" and dataset_key("mnist5k", "convnet") == "mnist5k_convnet"
    assert budget_of("mnist5k", "mlp") == BUDGETS["mnist5k"] and budget_of("mnist5k", "convnet") == CONVNET_BUDGETS["mnist5k"]


def test_a_convnet_is_trained_exported_and_scored_on_images(tmp_path, datasets):
    data = datasets["digits"]
    # 2 epochs: after 1 this 2-channel convnet's logits are so near ties that the nearest export's class-agreement check can
    # refuse it (as it did once the default input scaling changed)
    overrides = {"activation": "lut", "mode": "linear", "model": "convnet", "epochs": 2, "export": LUTNET_MODELS["lut_linear_to_nearest"]["export"]}
    row, model = train_and_export(data, 0, overrides, 2, tmp_path / "run")
    assert row["hidden"] == [2, 2] and row["exported_bins"] >= 2 and 0.0 <= row["test"]["accuracy"] <= 1.0
    assert row["params"] == convnet_parameters(1, 8, 2, 10, "lut", bins=TrainConfig().bins)
    assert onnx_output(model, data.as_images().X_test[:3]).shape == (3, 10)
