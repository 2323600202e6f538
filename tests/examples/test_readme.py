"""The README's own-model example runs as written, and the public names of lutnet.training are held."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_readme_example_runs(tmp_path: Path) -> None:
    block = re.search(r"<!-- example:start -->\n```python\n(.*?)```\n<!-- example:end -->", (ROOT / "README.md").read_text(), re.S)
    assert block is not None
    # In a fresh interpreter, as a reader would run it: torch state other tests left behind (thread counts) would change the
    # trained model, and with it which pockets the nearest export needs.
    script = tmp_path / "example.py"
    script.write_text(block.group(1))
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=600)
    assert (tmp_path / "models" / "mine" / "1" / "model.onnx").is_file() and (tmp_path / "models" / "mine" / "config.pbtxt").is_file()
    assert (tmp_path / "mine-nearest.onnx").is_file() and (tmp_path / "activations.png").read_bytes().startswith(b"\x89PNG")


def test_training_public_api() -> None:
    from lutnet import training

    assert sorted(training.__all__) == sorted([
        "ChannelError", "LUTActivation", "add_smoothness_gradients", "calibrate", "lut_layers", "lut_parameters", "optimizer_groups", "other_parameters",
        "plot_activations", "replace_activations", "smoothness",
    ])
    assert all(hasattr(training, name) for name in training.__all__)
