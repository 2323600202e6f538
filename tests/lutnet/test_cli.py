"""The console script: lazy dispatch, clear errors, and a curated public API."""
from __future__ import annotations

import subprocess
import sys

import lutnet
from lutnet.cli import COMMANDS, main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lutnet", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_is_one_clear_line_and_exit_2():
    result = run("frobnicate")
    assert result.returncode == 2
    assert result.stderr.strip() == "lutnet: error: unknown command 'frobnicate'; expected one of train, plot, export, serve"


def test_version():
    assert run("--version").stdout.strip() == f"lutnet {lutnet.__version__}"


def test_importing_the_core_and_cli_pulls_in_no_heavy_framework():
    code = "import sys, lutnet, lutnet.cli, lutnet.reference; print(sorted(m for m in ('torch','onnx','onnxruntime','fastapi') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_public_api_is_exactly_what_is_documented():
    assert sorted(lutnet.__all__) == sorted(
        ["Checkpoint", "CheckpointError", "DataError", "LUTSpec", "LutnetError", "ModelSpec", "__version__",
         "init_table", "lut_forward", "read_checkpoint", "resample_table", "write_checkpoint"]
    )
    assert all(hasattr(lutnet, name) for name in lutnet.__all__)


BLOCK = "import sys\nsys.modules[{name!r}] = None\n"  # an import of that package now fails as if it were not installed


def test_a_missing_extra_is_named_by_the_cli() -> None:
    code = BLOCK.format(name="fastapi") + "from lutnet.cli import main\nsys.exit(main(['serve', '--help']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "lutnet: error: lutnet.service needs 'fastapi', which is not installed; install the extra: pip install 'lutnet[serve]'"


def test_importing_a_subpackage_without_its_extra_names_the_extra() -> None:
    code = BLOCK.format(name="torch") + (
        "from lutnet.errors import ExtraNotInstalledError\n"
        "try:\n    import lutnet.training\nexcept ExtraNotInstalledError as exc:\n    print(exc.extra, isinstance(exc, ImportError))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "train True"
