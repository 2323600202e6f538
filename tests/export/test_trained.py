"""A model trained by ``training`` exports, verifies on its real test split, and serves the same predictions as torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lutnet import metadata
from lutnet.checkpoint import read_checkpoint
from lutnet.export.exporter import export_file

torch = pytest.importorskip("torch")
trainer = pytest.importorskip("lutnet.training.trainer")
data = pytest.importorskip("lutnet.training.data")
models = pytest.importorskip("lutnet.training.models")


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "mode"), [("iris", "linear"), ("diabetes", "nearest")])
def test_trained_checkpoint_exports_and_matches_torch(dataset: str, mode: str, tmp_path: Path) -> None:
    config = trainer.TrainConfig(out=str(tmp_path / "run"), dataset=dataset, hidden=(32, 32), bins=16, mode=mode, epochs=3, quiet=True, threads=1)
    trainer.train(config)
    split = data.load_dataset(dataset, seed=config.seed)
    result = export_file(tmp_path / "run", tmp_path / "model.onnx", verify_data=split.X_test)
    assert result.verification is not None and result.verification.passed
    assert result.verification.samples == len(split.X_test) + 193
    x = split.X_test.astype(np.float32)
    fused = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {metadata.DEFAULT_INPUT_NAME: x})[0]
    model = models.model_from_checkpoint(read_checkpoint(tmp_path / "run")).eval()
    with torch.inference_mode():
        eager = model(torch.from_numpy(x)).numpy()
    if split.task == "classification":
        assert np.mean(fused.argmax(axis=1) == eager.argmax(axis=1)) >= 0.999
    scale = np.abs(eager).max()
    assert np.mean(np.abs(fused - eager).max(axis=1) <= 1e-5 * scale) >= (1.0 if mode == "linear" else 0.9)
