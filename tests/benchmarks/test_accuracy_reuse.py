"""The accuracy suite's --reuse: runs already in the results file are kept and not repeated, other data sets included."""
from __future__ import annotations

import json

import pytest

from benchmarks import accuracy, common
from lutnet.errors import LutnetError


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    """Results and work under ``tmp_path``; a lutnet run returns its seed as its accuracy and is recorded in ``trained``."""
    trained = []
    for module in (accuracy, common):
        monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(accuracy, "WORK", tmp_path / "work")

    def run_lutnet(data, seed, budget, overrides, out):
        trained.append((data.name, seed))
        return {"hidden": [4, 4], "params": budget, "test": {"accuracy": seed / 10}}

    monkeypatch.setattr(accuracy, "run_lutnet", run_lutnet)
    return trained


def test_reuse_trains_only_the_missing_runs_and_keeps_other_data_sets(fake_suite):
    models = {"relu": accuracy.LUTNET_MODELS["relu"]}
    accuracy.measure("acc", ["wine"], [0], models, quick=False)
    accuracy.measure("acc", ["wine"], [0, 1], models, quick=False, reuse=True)
    path = accuracy.measure("acc", ["breast_cancer"], [0], models, quick=False, reuse=True)
    assert fake_suite == [("wine", 0), ("wine", 1), ("breast_cancer", 0)]
    result = json.loads(path.read_text())
    assert sorted((r["dataset"], r["seed"]) for r in result["runs"]) == [("breast_cancer", 0), ("wine", 0), ("wine", 1)]
    wine = next(e for e in result["summary"] if e["dataset"] == "wine")
    assert wine["seeds"] == 2 and wine["mean"] == pytest.approx(0.05)
    assert result["settings"]["budgets"] == {"wine": accuracy.BUDGETS["wine"], "breast_cancer": accuracy.BUDGETS["breast_cancer"]}
    assert result["complete"]


def test_without_reuse_the_file_holds_this_run_alone(fake_suite):
    models = {"relu": accuracy.LUTNET_MODELS["relu"]}
    accuracy.measure("acc", ["wine"], [0], models, quick=False)
    path = accuracy.measure("acc", ["wine"], [1], models, quick=False)
    assert fake_suite == [("wine", 0), ("wine", 1)] and [r["seed"] for r in json.loads(path.read_text())["runs"]] == [1]


def test_runs_made_with_another_budget_are_not_reused(fake_suite, monkeypatch):
    models = {"relu": accuracy.LUTNET_MODELS["relu"]}
    accuracy.measure("acc", ["wine"], [0], models, quick=False)
    monkeypatch.setitem(accuracy.BUDGETS, "wine", 1234)
    with pytest.raises(LutnetError, match="runs to reuse"):
        accuracy.measure("acc", ["wine"], [0], models, quick=False, reuse=True)
    assert fake_suite == [("wine", 0)]
