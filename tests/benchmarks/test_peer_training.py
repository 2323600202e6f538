"""The shared peer-runner code, exercised with a plain torch MLP in the project's own environment."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from benchmarks.peers.datasets import sklearn_digits, write_npz
from benchmarks.peers.peer_training import ScaledModel, layer_widths, run_peer, trainable_parameters, width_for_budget
from lutnet.errors import LutnetError


def relu_mlp(widths: list[int], seed: int) -> nn.Module:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


@pytest.mark.parametrize(("target", "depth"), [(1_000, 1), (5_000, 1), (20_000, 1), (100_000, 1), (20_000, 2), (100_000, 3)])
def test_width_lands_within_five_percent_of_the_budget(target, depth):
    width = width_for_budget(relu_mlp, 64, 10, target, depth)
    def count(w: int) -> int:
        return trainable_parameters(relu_mlp(layer_widths(64, w, depth, 10), 0))

    assert abs(count(width) - target) <= 0.05 * target
    assert abs(count(width) - target) <= min(abs(count(width + 1) - target), abs(count(width - 1) - target))


def test_budget_below_the_smallest_model_is_an_error():
    with pytest.raises(LutnetError, match="no width hits the parameter budget: expected 50 \\+-5%"):
        width_for_budget(relu_mlp, 64, 10, 50)


def test_scaling_maps_the_training_range_to_minus_one_one_and_undoes_target_scaling():
    split = sklearn_digits()
    model = ScaledModel(nn.Identity(), split)
    scaled = model.network_output(torch.as_tensor(split.X_train)).numpy()
    varying = split.X_train.max(axis=0) > split.X_train.min(axis=0)
    np.testing.assert_allclose(scaled[:, varying].min(axis=0), -1.0, atol=1e-6)
    np.testing.assert_allclose(scaled[:, varying].max(axis=0), 1.0, atol=1e-6)
    assert float(model.y_mean) == 0.0 and float(model.y_std) == 1.0
    regression = dataclasses.replace(split, task="regression", y_train=np.array([1.0, 5.0] * 539, np.float32))
    regression_model = ScaledModel(nn.Identity(), regression)
    assert (float(regression_model.y_mean), float(regression_model.y_std)) == (3.0, 2.0)
    standardized = regression_model.network_output(torch.zeros(1, 64))
    np.testing.assert_allclose(regression_model(torch.zeros(1, 64)).numpy(), standardized.numpy() * 2.0 + 3.0)


@pytest.mark.slow
def test_run_trains_scores_and_exports_a_model_onnxruntime_agrees_with(tmp_path, capsys):
    split = sklearn_digits()
    write_npz(split, tmp_path / "digits.npz")
    argv = [str(tmp_path / "digits.npz"), "--params", "5000", "--depth", "2", "--seeds", "4", "4", "--max-epochs", "8", "--onnx-out", str(tmp_path / "m.onnx")]
    assert run_peer("relu", relu_mlp, [], argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["params"] - 5000) <= 250 and len(result["layers"]) == 4
    first, again = result["runs"]
    assert first["seed"] == again["seed"] == 4 and first["epochs"] == 8 and 1 <= first["best_epoch"] <= 8
    assert first["test"]["accuracy"] > 0.85 and first["seconds_per_epoch"] > 0
    assert (first["best_epoch"], first["val"], first["test"]) == (again["best_epoch"], again["val"], again["test"])  # a seed fixes the run
    assert result["onnx"]["exported"] and result["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    assert result["onnx"]["op_types"].get("Gemm", 0) + result["onnx"]["op_types"].get("MatMul", 0) == 3
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": split.X_test[:1]})[0]
    assert logits.shape == (1, 10)
    assert (session.run(None, {"input": split.X_test})[0].argmax(axis=1) == split.y_test).mean() == pytest.approx(first["test"]["accuracy"])


@pytest.mark.slow
def test_regression_is_scored_in_the_targets_units(tmp_path, capsys):
    from sklearn.datasets import load_diabetes

    from benchmarks.peers.datasets import SplitArrays, split_arrays

    X, y = load_diabetes(return_X_y=True)
    split = split_arrays(SplitArrays("diabetes", "regression", X[:300], y[:300], X[300:370], y[300:370], X[370:], y[370:]))
    write_npz(split, tmp_path / "diabetes.npz")
    assert run_peer("relu", relu_mlp, [], [str(tmp_path / "diabetes.npz"), "--params", "2000", "--max-epochs", "30"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert set(run["test"]) == {"rmse", "relative_rmse", "r2"}
    assert run["test"]["r2"] > 0.2 and 30 < run["test"]["rmse"] < float(np.std(y))


def test_one_split_per_seed_trains_each_seed_on_its_own_split_as_a_run_of_its_own_would(tmp_path, capsys):
    """Several splits pair with --seeds in order; each seed's run equals that seed run alone on its split."""
    first, second = sklearn_digits(seed=0), sklearn_digits(seed=1)
    write_npz(first, tmp_path / "a.npz")
    write_npz(second, tmp_path / "b.npz")
    options = ["--params", "2000", "--max-epochs", "2"]
    assert run_peer("relu", relu_mlp, [], [str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), *options, "--seeds", "0", "1"]) == 0
    together = json.loads(capsys.readouterr().out)["runs"]
    assert run_peer("relu", relu_mlp, [], [str(tmp_path / "b.npz"), *options, "--seeds", "1"]) == 0
    alone = json.loads(capsys.readouterr().out)["runs"]
    assert [run["seed"] for run in together] == [0, 1]
    assert (together[1]["val"], together[1]["test"]) == (alone[0]["val"], alone[0]["test"]) != (together[0]["val"], together[0]["test"])


def test_split_count_must_match_the_seeds(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_peer("relu", relu_mlp, [], [str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--seeds", "0", "1", "2"])
    assert "expected one split or one per seed (3), got 2" in capsys.readouterr().err


def test_bad_split_path_exits_2_with_one_line(tmp_path, capsys):
    assert run_peer("relu", relu_mlp, [], [str(tmp_path / "absent.npz")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("run_relu: error: cannot read split") and captured.err.count("\n") == 1
