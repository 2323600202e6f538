"""``lutnet export`` end to end: files, repository, summary, and one clear line for every bad input."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lutnet import metadata, reference, tensorfile
from lutnet.checkpoint import CONFIG_FILE, TENSOR_FILE, read_checkpoint, write_checkpoint
from lutnet.cli import main as lutnet
from lutnet.spec import ModelSpec
from tests.export.checkpoints import mlp_spec, random_checkpoint
from tests.export.test_verify import wide_spec


def card(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = lutnet(["export", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_writes_a_verified_model_with_its_card(mlp_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    code, stdout, _ = run([mlp_dir, "--out", out], capsys)
    assert code == 0
    assert f"wrote {out}" in stdout and "nodes" in stdout and "verification passed on 449 inputs" in stdout
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    session = ort.InferenceSession(str(out))
    checkpoint = read_checkpoint(mlp_dir)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], reference.forward(checkpoint, x), rtol=1e-5, atol=1e-5)
    entries = card(out)
    assert entries[metadata.SOURCE_SHA256] == hashlib.sha256((mlp_dir / TENSOR_FILE).read_bytes()).hexdigest()
    assert 0 <= float(entries[metadata.MERGE_MAX_ERROR]) <= 1e-5
    assert entries[metadata.MODEL_NAME] == "synthetic" and json.loads(entries[metadata.LABELS]) == checkpoint.labels


def test_no_verify_records_an_unknown_merge_error(mlp_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run([mlp_dir, "--out", tmp_path / "m.onnx", "--no-verify", "--opset", "17"], capsys)
    assert code == 0 and "not verified" in stdout
    entries = card(tmp_path / "m.onnx")
    assert entries[metadata.MERGE_MAX_ERROR] == "null" and onnx.load(tmp_path / "m.onnx").opset_import[0].version == 17


def test_nearest_export_records_its_deviation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_checkpoint(random_checkpoint(mlp_spec(), seed=1, task="regression"), tmp_path / "ck")
    code, _, err = run([tmp_path / "ck", "--out", tmp_path / "n.onnx", "--mode", "nearest", "--max-error", "0.05"], capsys)
    assert code == 0, err
    entries = card(tmp_path / "n.onnx")
    assert entries[metadata.LUT_MODE] == "nearest" and int(entries[metadata.LUT_BINS]) >= 8
    assert 0 < float(entries[metadata.MERGE_MAX_ERROR]) <= 0.05


def test_verification_data_from_a_file_and_from_the_test_split(mlp_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = np.random.default_rng(1).normal(size=(40, 6))
    np.save(tmp_path / "x.npy", data)
    code, stdout, _ = run([mlp_dir, "--out", tmp_path / "a.onnx", "--verify-data", tmp_path / "x.npy"], capsys)
    assert code == 0 and "on 233 inputs" in stdout  # 40 rows + 193 extreme probes
    tensorfile.save_file({"X": data[:10].astype(np.float32), "y": np.zeros(10, dtype=np.int64)}, mlp_dir / "test_split.safetensors")
    code, stdout, _ = run([mlp_dir, "--out", tmp_path / "b.onnx"], capsys)
    assert code == 0 and "on 203 inputs" in stdout


def test_repository_versions(convnet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "models"
    for expected in (1, 2):
        code, stdout, _ = run([convnet_dir, "--repository", repo, "--name", "conv"], capsys)
        assert code == 0 and f"wrote {repo / 'conv' / str(expected) / 'model.onnx'}" in stdout
    assert card(repo / "conv" / "2" / "model.onnx")[metadata.MODEL_VERSION] == "2"
    assert 'name: "conv"' in (repo / "conv" / "config.pbtxt").read_text()
    code, _, err = run([convnet_dir, "--repository", repo, "--name", "conv", "--version", "2"], capsys)
    assert code == 2 and "version 2 of model 'conv'" in err and len(err.splitlines()) == 1


def corrupt(directory: Path, how: str) -> None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    if how == "missing dir":
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
    elif how == "missing tensors":
        (directory / TENSOR_FILE).unlink()
    elif how == "corrupt tensors":
        (directory / TENSOR_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    elif how == "unknown format version":
        (directory / CONFIG_FILE).write_text(json.dumps({**config, "format_version": 99}))
    elif how == "wrong shape":
        tensors = tensorfile.load_file(directory / TENSOR_FILE)
        tensors["hidden.0.weight"] = np.zeros((8, 7), dtype=np.float32)
        tensorfile.save_file(tensors, directory / TENSOR_FILE)


BAD_CHECKPOINTS = {
    "missing dir": "no such directory",
    "missing tensors": "tensor file",
    "corrupt tensors": "is corrupt or truncated: expected a safetensors file",
    "unknown format version": "format_version",
    "wrong shape": "tensor hidden.0.weight: expected shape [8, 6], got [8, 7]",
}


@pytest.mark.parametrize("how", BAD_CHECKPOINTS)
def test_bad_checkpoint_is_one_line_and_writes_nothing(how: str, mlp_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt(mlp_dir, how)
    out = tmp_path / "out"
    out.mkdir()
    code, stdout, err = run([mlp_dir, "--out", out / "m.onnx"], capsys)
    assert code == 2 and stdout == ""
    assert err.startswith("lutnet export: error: ") and len(err.splitlines()) == 1 and BAD_CHECKPOINTS[how] in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "{tmp}/missing/m.onnx"], "missing or read-only"),
        (["--out", "{tmp}"], "got a directory"),
        (["--out", "{tmp}/m.onnx", "--mode", "cubic"], "invalid choice"),
        (["--out", "{tmp}/m.onnx", "--bins-out", "1"], "--bins-out: expected an integer >= 2"),
        (["--out", "{tmp}/m.onnx", "--bins-out", "9", "--max-error", "0.1"], "not allowed with"),
        (["--out", "{tmp}/m.onnx", "--opset", "7"], "ONNX opset"),
        (["--out", "{tmp}/m.onnx", "--name", "x"], "together with --repository"),
        (["--repository", "{tmp}/r", "--name", "../up"], "model name"),
        (["--out", "{tmp}/m.onnx", "--verify-data", "{tmp}/none.npy"], "verification data"),
        (["--out", "{tmp}/m.onnx", "--mode", "nearest", "--bins-out", "2"], "verification failed, nothing written: predicted classes agree on"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_checkpoint(random_checkpoint(wide_spec("linear"), seed=3), tmp_path / "ck")
    before = sorted(tmp_path.rglob("*"))
    code, stdout, err = run([tmp_path / "ck", *(a.format(tmp=tmp_path) for a in argv)], capsys)
    assert code == 2 and stdout == "" and len(err.splitlines()) == 1 and message in err, err
    assert sorted(tmp_path.rglob("*")) == before


def test_resolution_options_need_a_lut_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ModelSpec(family="mlp", input_shape=(3,), num_outputs=2, hidden=(4,), activation="relu")
    write_checkpoint(random_checkpoint(spec), tmp_path / "relu")
    code, _, err = run([tmp_path / "relu", "--out", tmp_path / "m.onnx", "--bins-out", "16"], capsys)
    assert code == 2 and "--bins-out: expected a LUT model, got a relu baseline" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_export_never_imports_torch_or_training(mlp_dir: Path, tmp_path: Path) -> None:
    """The dependency rule, at run time: with torch unimportable, a whole export works and leaves torch and training out of sys.modules."""
    script = (
        "import sys\nsys.modules['torch'] = None  # import torch now raises ImportError, as where it is not installed\n"
        "from lutnet.cli import main\n"
        f"assert main(['export', {str(mlp_dir)!r}, '--out', {str(tmp_path / 'm.onnx')!r}]) == 0\n"
        "import lutnet.export.cli, lutnet.export.exporter, lutnet.export.graph, lutnet.export.fold, lutnet.export.verify, lutnet.export.repository\n"
        "import lutnet.export.lookups, lutnet.export.torch_module\n"
        "del sys.modules['torch']\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.split('.')[:2] in (['lutnet', 'training'], ['lutnet', 'service']))\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2], capture_output=True)


def test_public_api() -> None:
    from lutnet import export

    assert sorted(export.__all__) == sorted(
        [
            "Coordinate", "ExportResult", "LoweredModel", "ModuleExportError", "Verification", "VerificationError", "build_graph", "export_file",
            "export_model", "export_module", "export_to_repository", "lower_lookups", "monitor_graph", "probe_inputs", "range_card", "verify",
        ]
    )
    assert all(hasattr(export, name) for name in export.__all__)
