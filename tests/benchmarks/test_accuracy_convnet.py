"""The accuracy suite's convnet runs: rows under <set>_convnet at the convnet budget, and seeds added with --merge."""
from __future__ import annotations

import json

import pytest

from benchmarks import accuracy, common


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    """Results and work under ``tmp_path``; a lutnet run returns its seed as its accuracy and is recorded in ``trained``."""
    trained = []
    for module in (accuracy, common):
        monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(accuracy, "WORK", tmp_path / "work")

    def run_lutnet(data, seed, budget, overrides, out):
        trained.append((data.name, seed, overrides.get("model", "mlp"), budget))
        return {"hidden": [4, 4], "params": budget, "test": {"accuracy": seed / 10}}

    monkeypatch.setattr(accuracy, "run_lutnet", run_lutnet)
    return trained


def test_convnet_rows_are_named_apart_and_seeds_are_added_with_merge(fake_suite):
    models = {"relu": accuracy.LUTNET_MODELS["relu"]}
    accuracy.measure("acc", ["digits"], [0], models, quick=False, family="convnet")
    path = accuracy.measure("acc", ["digits"], [1], models, quick=False, merge=True, family="convnet")
    budget = accuracy.CONVNET_BUDGETS["digits"]
    assert fake_suite == [("digits", 0, "convnet", budget), ("digits", 1, "convnet", budget)]
    result = json.loads(path.read_text())
    assert sorted((r["dataset"], r["seed"]) for r in result["runs"]) == [("digits_convnet", 0), ("digits_convnet", 1)]
    (entry,) = result["summary"]
    assert entry["dataset"] == "digits_convnet" and entry["seeds"] == 2 and entry["mean"] == pytest.approx(0.05)
    assert result["settings"]["budgets"] == {"digits_convnet": budget}


def test_the_mlp_rows_keep_the_set_name_and_budget(fake_suite):
    accuracy.measure("acc", ["wine"], [0], {"relu": accuracy.LUTNET_MODELS["relu"]}, quick=False)
    assert fake_suite == [("wine", 0, "mlp", accuracy.BUDGETS["wine"])]


def test_convnet_option_refuses_table_data_sets(capsys):
    with pytest.raises(SystemExit):
        accuracy.main(["--convnet", "--datasets", "wine"])
    assert "--convnet runs on the image sets" in capsys.readouterr().err
