"""``lutnet train`` end to end: a learning run, checkpoints, resume, DDP and every bad input of the issue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lutnet import cli, reference, tensorfile
from lutnet.checkpoint import TEST_SPLIT_FILE, read_checkpoint
from lutnet.lut import table_movement
from lutnet.export.verify import probe_inputs
from lutnet.ranges import DEFAULT_PERCENTILES, checkpoint_input_range
from lutnet.spec import ModelSpec
from lutnet.training.data import input_statistics, load_dataset
from lutnet.training.models import build_model
from lutnet.training.trainer import Distributed, TrainConfig, epoch_batches, make_scheduler, step_loss

FAST = ["--hidden", "32,32", "--lr", "1e-2", "--table-lr", "1e-2", "--threads", "1", "--quiet"]
REPOSITORY = Path(__file__).resolve().parents[2]


def train(*args: str) -> int:
    return cli.main(["train", *args])


def history(out: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock field."""
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def run_files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir()} if out.exists() else set()


def test_short_digits_run_beats_chance_and_writes_a_complete_checkpoint(tmp_path: Path) -> None:
    """4 epochs of the LUT-MLP on digits: test accuracy far above chance (0.1), measured independently."""
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "4", *FAST) == 0
    assert run_files(out) == {"config.json", "model.safetensors", "metrics.jsonl", "test_split.safetensors", "calibration.safetensors"}
    checkpoint = read_checkpoint(out)
    data = load_dataset("digits", seed=0)
    split = tensorfile.load_file(out / TEST_SPLIT_FILE)
    assert split["X"].dtype == np.float32 and split["y"].dtype == np.int64
    np.testing.assert_array_equal(split["X"], data.X_test.astype(np.float32))
    np.testing.assert_array_equal(split["y"], data.y_test)
    accuracy = float((reference.forward(checkpoint, data.X_test).argmax(1) == data.y_test).mean())
    assert accuracy > 0.85
    assert checkpoint.info["metrics"]["test"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert checkpoint.info["dataset"]["sizes"] == data.sizes() and checkpoint.info["dataset"]["split_seed"] == 0
    assert checkpoint.info["training"]["epochs"] == 4 and set(checkpoint.info["versions"]) == {"lutnet", "torch", "numpy", "python"}
    assert [h["epoch"] for h in history(out)] == [1, 2, 3, 4]
    input_range = checkpoint_input_range(checkpoint.info, 64)
    assert input_range is not None and input_range.percentiles == DEFAULT_PERCENTILES
    np.testing.assert_allclose(input_range.hi, np.percentile(data.X_train, DEFAULT_PERCENTILES[1], axis=0), rtol=1e-6)


@pytest.mark.slow
def test_default_settings_train_a_good_digits_model_in_under_a_minute(tmp_path: Path) -> None:
    """The defaults (LUT-MLP 256,256) reach at least 96% test accuracy on digits within a minute of training."""
    out = tmp_path / "run"
    assert train("--out", str(out), "--threads", "1", "--quiet") == 0
    info = read_checkpoint(out).info
    assert info["metrics"]["test"]["accuracy"] >= 0.96
    assert info["training"]["seconds"] < 60


def test_early_stopping_keeps_the_best_validation_accuracy_with_loss_breaking_ties(tmp_path: Path) -> None:
    """By default the kept epoch has the best validation accuracy (lowest loss among equals); the run stops 2 epochs later."""
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "40", "--patience", "2", *FAST) == 0
    checkpoint, epochs = read_checkpoint(out), history(out)
    best = min(epochs, key=lambda h: (-h["val_accuracy"], h["val_loss"]))
    assert len(epochs) < 40 and len(epochs) == best["epoch"] + 2 == checkpoint.info["training"]["epochs_run"]
    assert checkpoint.info["training"]["best_epoch"] == best["epoch"]
    assert checkpoint.info["training"]["selected_by"] == {"split": "val", "metric": "accuracy", "tie_break": "loss"}
    assert checkpoint.info["metrics"]["val"]["accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-12)


def test_select_loss_keeps_the_best_validation_loss(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "40", "--patience", "2", "--select", "loss", *FAST) == 0
    checkpoint, epochs = read_checkpoint(out), history(out)
    best = min(epochs, key=lambda h: h["val_loss"])
    assert checkpoint.info["training"]["best_epoch"] == best["epoch"] and len(epochs) == best["epoch"] + 2
    assert checkpoint.info["training"]["selected_by"]["metric"] == "loss"
    assert checkpoint.info["metrics"]["val"]["loss"] == pytest.approx(best["val_loss"], rel=1e-6)


def test_patience_one_still_trains_an_epoch_and_writes_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    assert train("--out", str(out), "--epochs", "3", "--patience", "1", *FAST) == 0
    assert {"config.json", "model.safetensors", "test_split.safetensors"} <= run_files(out)
    assert len(history(out)) >= 1


def test_table_movement_is_recorded_per_epoch_and_in_the_checkpoint(tmp_path: Path) -> None:
    """Relative L2 distance of each LUT layer's tables from their init function, as lutnet.lut.table_movement defines it."""
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "2", *FAST) == 0
    checkpoint = read_checkpoint(out)
    moved = checkpoint.info["training"]["table_movement"]
    expected = [table_movement(*(checkpoint.tensors[f"act.{i}.{k}"] for k in ("table", "lo", "hi")), "relu") for i in range(2)]
    assert moved == pytest.approx(expected, rel=1e-5, abs=1e-6) and all(m > 0 for m in moved)
    assert [len(h["table_movement"]) for h in history(out)] == [2, 2]


def test_regression_csv_run_predicts_in_target_units(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = 100 + 10 * np.tanh(X[:, 0]) + 5 * X[:, 1]
    csv = tmp_path / "smooth.csv"
    csv.write_text("a,b,c,y\n" + "".join(f"{a:.5f},{b:.5f},{c:.5f},{t:.5f}\n" for (a, b, c), t in zip(X, y, strict=True)), encoding="utf-8")
    out = tmp_path / "run"
    assert train("--dataset", str(csv), "--out", str(out), "--epochs", "30", "--lr", "3e-3", *FAST) == 0
    checkpoint = read_checkpoint(out)
    assert checkpoint.task == "regression" and checkpoint.info["metrics"]["test"]["r2"] > 0.8
    predictions = reference.forward(checkpoint, X)[:, 0]
    assert abs(predictions.mean() - y.mean()) < 3.0
    split = tensorfile.load_file(out / TEST_SPLIT_FILE)
    assert split["X"].shape == (30, 3) and split["y"].dtype == np.float32


def test_convnet_run_learns(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert train("--model", "convnet", "--hidden", "8", "--epochs", "3", "--out", str(out), "--threads", "1", "--quiet") == 0
    checkpoint = read_checkpoint(out)
    assert checkpoint.spec.input_shape == (1, 8, 8) and checkpoint.info["metrics"]["test"]["accuracy"] > 0.5
    assert checkpoint_input_range(checkpoint.info, 64) is not None  # one range per pixel of the image
    split = tensorfile.load_file(out / TEST_SPLIT_FILE)
    assert split["X"].shape == (len(load_dataset("digits").X_test), 1, 8, 8) and split["X"].dtype == np.float32


def test_export_verifies_on_the_stored_test_split_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``lutnet export DIR`` of a trained run verifies on every test row the trainer stored (plus its own extreme probes)."""
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "1", *FAST) == 0
    capsys.readouterr()
    assert cli.main(["export", str(out), "--out", str(tmp_path / "model.onnx")]) == 0
    data = load_dataset("digits", seed=0)
    probes = probe_inputs(read_checkpoint(out), data.X_test)
    assert len(probes.typical) == len(data.X_test) != 256  # 256 is the count of random draws without the split
    assert f"verification passed on {len(probes.typical) + len(probes.extreme)} inputs" in capsys.readouterr().out


def test_std_floor_is_recorded_in_the_checkpoint_and_its_export_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--std-floor changes only the stored input standardization (which export folds in): the checkpoint records the
    setting, its std is the floored one of the train split, and ``lutnet export`` verifies the fused model."""
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "1", "--std-floor", "0.2", *FAST) == 0
    checkpoint = read_checkpoint(out)
    assert checkpoint.info["training"]["std_floor"] == 0.2
    X_train = load_dataset("digits", seed=0).X_train
    np.testing.assert_allclose(checkpoint.input_std, input_statistics(X_train, 0.2)[1], rtol=1e-6)
    assert np.any(checkpoint.input_std > input_statistics(X_train)[1] * 1.01)  # digits has rarely-inked pixels to floor
    capsys.readouterr()
    assert cli.main(["export", str(out), "--out", str(tmp_path / "model.onnx")]) == 0
    assert "verification passed" in capsys.readouterr().out


def test_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    """Stopping after 2 of 5 epochs and resuming yields the same bytes as one uninterrupted run."""
    settings = ["--epochs", "5", "--recalibrate-after", "3", "--smoothness", "1e-3", *FAST]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train("--out", str(whole), *settings) == 0
    assert train("--out", str(split), "--stop-after", "2", *settings) == 0
    assert run_files(split) == {"metrics.jsonl", "train_state.json", "train_state-2.safetensors"}
    assert train("--resume", str(split), "--threads", "1", "--quiet") == 0
    assert (split / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert history(split) == history(whole)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    """SIGKILL a training process mid-run, resume it, and compare with an uninterrupted run."""
    settings = ["--epochs", "40", "--patience", "40", "--hidden", "128,128", "--threads", "1", "--quiet"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "lutnet", "train", "--out", str(killed), *settings], cwd=REPOSITORY)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text(encoding="utf-8").splitlines()) >= 3:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model.safetensors").exists()
    assert train("--resume", str(killed), "--threads", "1", "--quiet") == 0
    assert train("--out", str(whole), *settings) == 0
    assert (killed / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path: Path) -> None:
    """torchrun with 2 gloo processes trains a model as good as 1 process; only rank 0 writes."""
    settings = ["--epochs", "3", "--device", "cpu", *FAST]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lutnet", "train", "--out", str(ddp), *settings]
    completed = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert train("--out", str(single), *settings) == 0
    assert run_files(ddp) == {"config.json", "model.safetensors", "metrics.jsonl", "test_split.safetensors", "calibration.safetensors"}
    assert [h["epoch"] for h in history(ddp)] == [1, 2, 3]
    accuracy = read_checkpoint(ddp).info["metrics"]["test"]["accuracy"]
    assert accuracy > 0.85 and abs(accuracy - read_checkpoint(single).info["metrics"]["test"]["accuracy"]) < 0.05


def test_process_shards_and_loss_scaling_reproduce_the_global_batch_gradient() -> None:
    """What DDP averages over 2 processes equals the single-process gradient of every global batch."""
    data = load_dataset("digits")
    X, y = torch.tensor(data.X_train[:103], dtype=torch.float32), torch.tensor(data.y_train[:103])
    spec = ModelSpec(family="mlp", input_shape=(64,), num_outputs=10, hidden=(16,), activation="lut")
    model = build_model(spec)
    single = epoch_batches(len(X), 25, seed=0, epoch=0, dist=Distributed())
    shards = [epoch_batches(len(X), 25, seed=0, epoch=0, dist=Distributed(rank, 2)) for rank in (0, 1)]

    def gradient(rows: np.ndarray, global_size: int, world: int) -> list[torch.Tensor]:
        index = torch.from_numpy(rows)
        loss, _ = step_loss(model, model, X[index], y[index], global_size, world)
        return torch.autograd.grad(loss, list(model.parameters()))

    for (rows, size), (rows0, size0), (rows1, size1) in zip(single, *shards, strict=True):
        assert size == size0 == size1 == len(rows) and np.array_equal(np.concatenate([rows0, rows1]), rows)
        averaged = [(a + b) / 2 for a, b in zip(gradient(rows0, size, 2), gradient(rows1, size, 2), strict=True)]
        for got, expected in zip(averaged, gradient(rows, size, 1), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# --- bad input: one clear line, exit 2, nothing written ---------------------------------------------

def csv_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


BAD_DATA = {
    "unknown data set": (lambda tmp: ["--dataset", "imagenet"], "expected one of ['digits'"),
    "missing file": (lambda tmp: ["--dataset", str(tmp / "nowhere.csv")], "expected an existing CSV file, got no such file"),
    "missing target": (lambda tmp: ["--dataset", csv_file(tmp, "a,b\n" + "1,0\n" * 20), "--target", "y"], "expected one of ['a', 'b'], got 'y'"),
    "non-numeric target": (lambda tmp: ["--dataset", csv_file(tmp, "a,y\n" + "1,cat\n" * 20)], "column 'y': expected a number, got 'cat'"),
    "NaN cell": (lambda tmp: ["--dataset", csv_file(tmp, "a,y\n1,0\nNaN,1\n" * 10)], "column 'a': expected a finite number, got 'NaN'"),
    "non-numeric cell": (lambda tmp: ["--dataset", csv_file(tmp, "a,y\n1,0\n1e,1\n" * 10)], "column 'a': expected a number, got '1e'"),
    "empty data": (lambda tmp: ["--dataset", csv_file(tmp, "")], "expected a header row and at least one data row, got 0 rows"),
    "convnet on a table": (lambda tmp: ["--dataset", "wine", "--model", "convnet"], "expected an image data set"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_clear_line_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    arguments, message = BAD_DATA[case]
    out = tmp_path / "run"
    assert train("--out", str(out), *arguments(tmp_path), *FAST) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lutnet train: error: ") and message in lines[0]
    assert not out.exists()


def test_resume_of_a_directory_without_state_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert train("--resume", str(tmp_path / "empty")) == 2
    assert "expected the training state of an interrupted 'lutnet train' run, got no train_state.json" in capsys.readouterr().err
    assert run_files(tmp_path / "empty") == set()


def test_resume_of_another_model_or_a_finished_run_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert train("--out", str(out), "--epochs", "3", "--stop-after", "1", *FAST) == 0
    assert "continue with: lutnet train --resume" in capsys.readouterr().err
    before = {name: (out / name).read_bytes() for name in run_files(out)}
    assert train("--resume", str(out), "--hidden", "64", "--activation", "relu") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a run of another model" in err
    assert "expected hidden=[32, 32], activation='lut', got hidden=[64], activation='relu'" in err
    assert {name: (out / name).read_bytes() for name in run_files(out)} == before
    assert train("--resume", str(out), "--threads", "1", "--quiet") == 0
    assert train("--resume", str(out)) == 2
    assert "got a finished checkpoint (nothing left to resume)" in capsys.readouterr().err
    assert train("--out", str(out), *FAST) == 2
    assert "use --resume DIR to continue a run there), got an existing run (config.json, model.safetensors)" in capsys.readouterr().err


@pytest.mark.parametrize("arguments,message", [
    (["--bins", "1"], "argument --bins: expected an integer >= 2, got '1'"),
    (["--hidden", "64,x"], "argument --hidden: expected comma-separated positive integers, like 256,256, got '64,x'"),
    (["--model", "transformer"], "argument --model: invalid choice: 'transformer'"),
    (["--lr", "-1"], "argument --lr: expected a positive number, got '-1'"),
    (["--percentiles", "99,1"], "expected LOW < HIGH <= 100"),
    (["--std-floor", "-0.1"], "argument --std-floor: expected a number >= 0, got '-0.1'"),
    ([], "the following arguments are required: --out"),
])
def test_invalid_flags_exit_2_with_an_argparse_error(capsys: pytest.CaptureFixture[str], arguments: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train(*arguments)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA where there is none")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train("--out", str(tmp_path / "run"), "--device", "cuda") == 2
    assert "--device cuda: expected a CUDA-capable torch and GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_console_script_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "lutnet", "train", "--dataset", str(tmp_path / "x.csv"), "--out", str(tmp_path / "run")],
                               cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines() == [f"lutnet train: error: data file {tmp_path / 'x.csv'}: expected an existing CSV file, got no such file"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("schedule", "table_factor"), [("cosine", 0.5), ("constant", 1.0)])
def test_table_schedule_decays_or_keeps_the_tables_rate(schedule: str, table_factor: float) -> None:
    """Halfway through, the weights' rate is half its start under cosine decay; the tables' follows it or stays."""
    weights, tables = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([{"params": [weights], "lr": 1e-3}, {"params": [tables], "lr": 1e-2}])
    scheduler = make_scheduler(optimizer, schedule, steps=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(1e-2 * table_factor)


def test_optimizer_groups_give_the_tables_the_recipes_rate() -> None:
    """Any module: the tables in a group of their own at TABLE_LR, every other parameter at the given rate."""
    from lutnet.training import LUTActivation, optimizer_groups
    from lutnet.training.convert import TABLE_LR

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), LUTActivation(4), torch.nn.Linear(4, 2))
    weights, tables = optimizer_groups(model, lr=1e-3, weight_decay=1e-4)
    assert tables["params"] == [model[1].table] and tables["lr"] == TABLE_LR == TrainConfig().table_lr
    assert {id(p) for p in weights["params"]} == {id(p) for p in model.parameters()} - {id(model[1].table)} and weights["lr"] == 1e-3
