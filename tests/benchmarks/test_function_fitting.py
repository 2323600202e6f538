"""The function-fitting suite: --merge adds peers and keeps lutnet's rows exactly as they were; --plots draws each task's tables."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from benchmarks import accuracy, common, function_fitting
from lutnet.training.formulas import TASKS
from lutnet.training.plot import PlottedLayer


def row(model, seed, value, dataset="friedman1"):
    return {"dataset": dataset, "seed": seed, "model": model, "hidden": [4], "params": 100,
            "test": {"rmse": value, "relative_rmse": value}, "val": {"rmse": value, "relative_rmse": value}}


@pytest.fixture
def results(tmp_path, monkeypatch):
    """A results folder holding lutnet's rows for friedman1 (2 seeds) and one old pykan row; no training, no peer set-up."""
    for module in (accuracy, common):
        monkeypatch.setattr(module, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(accuracy, "WORK", tmp_path / "work")
    monkeypatch.setattr(accuracy, "PEER_WORK", tmp_path / "peer_work")
    monkeypatch.setattr(accuracy, "ensure", lambda peer: {"peer": peer.name, "built": False})

    def run_dataset(name, seeds, models, quick, bar):
        return [row(model, seed, 0.5 + seed, name) for seed in seeds for model in models]

    monkeypatch.setattr(accuracy, "run_dataset", run_dataset)
    runs = [row("lut_linear", 0, 0.01), row("lut_linear", 1, 0.03), row("relu", 0, 0.1), row("relu", 1, 0.2), row("pykan", 0, 9.0)]
    settings = {"budgets": {"friedman1": 3000}, "seeds": [0, 1], "models": {"lut_linear": {}, "relu": {}}, "peer_seconds_cap": {"friedman1": 12.0}}
    earlier = {"suite": "function_fitting", "machine": {"date": "then"}, "settings": settings, "peer_setup": [], "complete": True,
               "runs": runs, "summary": accuracy.summarize_rows(runs, {"friedman1": "regression"})}
    (tmp_path / "function_fitting.json").write_text(json.dumps(earlier))
    return tmp_path


def test_merge_adds_peers_and_keeps_every_other_row_and_summary(results):
    before = json.loads((results / "function_fitting.json").read_text())
    assert function_fitting.main(["--tasks", "friedman1", "--seeds", "0", "1", "--models", "pykan", "deepsplines", "--merge"]) == 0
    after = json.loads((results / "function_fitting.json").read_text())
    lutnet = lambda result: [r for r in result["runs"] if r["model"] in ("lut_linear", "relu")]  # noqa: E731
    assert lutnet(after) == lutnet(before)
    summary = lambda result, model: next(e for e in result["summary"] if e["model"] == model)  # noqa: E731
    assert summary(after, "lut_linear") == summary(before, "lut_linear") and summary(after, "relu") == summary(before, "relu")
    pykan = [r for r in after["runs"] if r["model"] == "pykan"]
    assert [(r["seed"], r["test"]["relative_rmse"]) for r in pykan] == [(0, 0.5), (1, 1.5)]  # the old seed-0 row is replaced
    assert summary(after, "deepsplines")["seeds"] == 2 and summary(after, "pykan")["mean"] == 1.0
    assert set(after["settings"]["models"]) == {"lut_linear", "relu", "pykan", "deepsplines"}
    assert after["settings"]["merges"] == [{"models": ["pykan", "deepsplines"], "datasets": ["friedman1"], "seeds": [0, 1], "quick": False,
                                            "onto_machine": {"date": "then"}}]
    assert after["complete"] and after["settings"]["seeds"] == [0, 1]  # the earlier settings win
    assert after["settings"]["peer_epochs"] == accuracy.PEER_EPOCHS  # a setting the earlier file lacks comes from the added run


def test_merge_records_the_trainer_defaults_that_changed_since_the_earlier_results(results):
    earlier = json.loads((results / "function_fitting.json").read_text())
    defaults = json.loads(json.dumps(dataclasses.asdict(accuracy.TrainConfig())))
    earlier["settings"]["trainer_defaults"] = {**defaults, "std_floor": -1.0}
    (results / "function_fitting.json").write_text(json.dumps(earlier))
    assert function_fitting.main(["--tasks", "friedman1", "--seeds", "0", "--models", "lut_linear", "--merge"]) == 0
    after = json.loads((results / "function_fitting.json").read_text())
    assert after["settings"]["merges"][0]["trainer_defaults_changed"] == {"std_floor": defaults["std_floor"]}
    assert after["settings"]["trainer_defaults"]["std_floor"] == -1.0  # the file's own defaults stay those of its earlier rows


def test_without_merge_the_file_holds_only_what_ran(results):
    assert function_fitting.main(["--tasks", "friedman1", "--seeds", "0", "--models", "pykan"]) == 0
    after = json.loads((results / "function_fitting.json").read_text())
    assert {r["model"] for r in after["runs"]} == {"pykan"} and "merges" not in after["settings"]


def test_merge_into_a_missing_file_is_one_clear_error(results, capsys):
    (results / "function_fitting.json").unlink()
    assert function_fitting.main(["--tasks", "friedman1", "--seeds", "0", "--models", "pykan", "--merge"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("benchmarks.function_fitting: error: results to merge into") and "Traceback" not in error
    assert not (results / "function_fitting.json").exists()


def test_first_layer_channels_are_grouped_and_labelled_by_the_input_that_drives_them(tmp_path):
    layer = PlottedLayer("layer 0", np.arange(12.0).reshape(3, 4), np.zeros(3), np.ones(3), "linear", "linear", "relu")
    weight = np.array([[0.1, -0.9], [2.0, 1.0], [-0.2, 0.6]])  # channel 0 and 2 follow b (90%, 75%), channel 1 follows a (67%)
    grouped = function_fitting.by_driving_input(layer, weight, ["a", "b"])
    assert grouped.labels == ("c1 a 67%", "c0 b 90%", "c2 b 75%")
    np.testing.assert_array_equal(grouped.table, layer.table[[1, 0, 2]])


def test_every_task_has_its_formula_for_the_title():
    assert function_fitting.formula_text("friedman2") == "friedman2: y = sqrt(x0^2 + (x1 x2 - 1 / (x1 x3))^2)"
    assert function_fitting.formula_text("feynman_i_39_22") == "feynman_i_39_22 (Feynman I.39.22): y = n kb T / V"
    assert all(function_fitting.formula_text(task) for task in TASKS)


@pytest.mark.slow
def test_plots_train_the_seed_0_model_draw_it_and_record_it_beside_earlier_tasks(results, monkeypatch):
    suite_config = function_fitting.lutnet_config

    def one_epoch(*args):
        config, params = suite_config(*args)
        return dataclasses.replace(config, epochs=1), params

    monkeypatch.setattr(function_fitting, "lutnet_config", one_epoch)
    monkeypatch.setattr(function_fitting, "RESULTS_DIR", results)
    monkeypatch.setattr(function_fitting, "PLOT_WORK", results / "plots")
    (results / "fitting_plots.json").write_text(json.dumps({"plots": {"friedman1": {"png": "fitting_friedman1.png"}}}))
    assert function_fitting.main(["--plots", "--tasks", "feynman_i_39_22"]) == 0
    assert (results / "fitting_feynman_i_39_22.png").read_bytes().startswith(b"\x89PNG")
    plots = json.loads((results / "fitting_plots.json").read_text())["plots"]
    assert set(plots) == {"friedman1", "feynman_i_39_22"}
    entry = plots["feynman_i_39_22"]
    assert entry["png"] == "fitting_feynman_i_39_22.png" and entry["formula"].endswith("y = n kb T / V") and entry["epochs"] == 1
    assert len(entry["table_movement"]) == 2 and 0 < entry["test_relative_rmse"] < 2
