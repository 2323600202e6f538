"""``lutnet serve`` argument handling: flags over environment, clear errors, the curl example, the dependency rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lutnet.cli import main as lutnet_main
from lutnet.errors import LutnetError
from lutnet.service.cli import build_parser, check_repository, curl_example, settings_from, worker_metrics
from lutnet.service.settings import Settings


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUTNET_PORT", "9000")
    monkeypatch.setenv("LUTNET_BATCHING", "true")
    from_env = settings_from(build_parser().parse_args([]))
    assert from_env.port == 9000 and from_env.batching and from_env.intra_op_threads == 1
    flags = settings_from(build_parser().parse_args(["--port", "9001", "--no-batching", "--threads", "2", "--poll", "1.5", "--execution", "thread"]))
    assert (flags.port, flags.batching, flags.intra_op_threads, flags.poll_seconds, flags.execution) == (9001, False, 2, 1.5, "thread")


def test_help_names_the_environment_variable_of_every_flag() -> None:
    text = build_parser().format_help()
    assert "[LUTNET_POLL_SECONDS]" in text and "[LUTNET_INTRA_OP_THREADS]" in text and "[LUTNET_MAX_QUEUE_DELAY_US]" in text


def test_explicit_settings_travel_to_workers_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(port=9100, batching=True, api_token="t0ken", repository=Path("models"))
    for key, value in settings.to_environment().items():
        monkeypatch.setenv(key, value)
    rebuilt = Settings()
    assert rebuilt == settings and rebuilt.model_fields_set == settings.model_fields_set


def test_invalid_flag_values_are_one_clear_error() -> None:
    with pytest.raises(LutnetError, match="invalid settings .*port"):
        settings_from(build_parser().parse_args(["--port", "70000"]))


def test_missing_or_empty_repository_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lutnet_main(["serve", "--repository", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert lutnet_main(["serve", "--repository", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "at least one model that loads" in error and "lutnet export" in error


def test_repository_of_only_broken_models_names_the_failure(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"junk")
    with pytest.raises(LutnetError, match="version 1: .*ONNX model onnxruntime can load"):
        check_repository(Settings(repository=tmp_path))


def test_curl_example_has_one_row_of_the_models_width(repository: Path) -> None:
    models = {model.name: model for model in check_repository(Settings(repository=repository))}
    example = curl_example(models["digits"], "0.0.0.0", 8000)
    assert example.startswith("curl -s localhost:8000/v1/models/digits:predict -d '")
    assert example.endswith("'") and example.count("0,") == 63


def test_service_never_imports_torch_onnx_training_or_export() -> None:
    code = ("import sys, lutnet.service.cli, lutnet.service.app\n"
            "print(sorted(m for m in ('torch', 'onnx', 'lutnet.training', 'lutnet.export') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_public_api_is_what_all_says() -> None:
    from lutnet import service

    public = {name for name, value in vars(service).items() if not name.startswith("_") and getattr(value, "__module__", "").startswith("lutnet.service.")}
    assert public == set(service.__all__)


def test_several_workers_get_a_fresh_metrics_folder_removed_afterwards() -> None:
    with worker_metrics(Settings(workers=1)) as settings:
        assert settings.metrics_dir is None
    with worker_metrics(Settings(workers=2)) as settings:
        folder = settings.metrics_dir
        assert folder is not None and folder.is_dir() and not any(folder.iterdir())
        assert settings.to_environment()["LUTNET_METRICS_DIR"] == str(folder)  # the workers rebuild their settings from it
    assert not folder.exists()
