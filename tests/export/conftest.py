"""Shared fixtures of the export tests: checkpoint directories written through the lutnet contract."""
from __future__ import annotations

from pathlib import Path

import pytest

from lutnet.checkpoint import write_checkpoint
from tests.export.checkpoints import convnet_spec, mlp_spec, random_checkpoint


@pytest.fixture
def mlp_dir(tmp_path: Path) -> Path:
    write_checkpoint(random_checkpoint(mlp_spec(), seed=1), tmp_path / "mlp")
    return tmp_path / "mlp"


@pytest.fixture
def convnet_dir(tmp_path: Path) -> Path:
    write_checkpoint(random_checkpoint(convnet_spec(mode="nearest"), seed=2), tmp_path / "convnet")
    return tmp_path / "convnet"
