"""End to end with models made by ``lutnet export``: served answers equal the numpy reference of the checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from lutnet.export.exporter import export_to_repository
from lutnet.checkpoint import write_checkpoint
from lutnet.reference import forward, predict_proba
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.service.app import create_app
from lutnet.service.settings import Settings
from tests.export.checkpoints import random_checkpoint
from tests.service.conftest import TestClient, binary_body, decode_binary


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("exported")
    checkpoints = {
        "digits": random_checkpoint(ModelSpec(family="mlp", input_shape=(64,), num_outputs=10, hidden=(32, 16), lut=LUTSpec(bins=16)), seed=1),
        "wine-quality": random_checkpoint(
            ModelSpec(family="mlp", input_shape=(11,), num_outputs=1, hidden=(8,), lut=LUTSpec(bins=8)), seed=2, task="regression"
        ),
    }
    for name, checkpoint in checkpoints.items():
        write_checkpoint(checkpoint, root / "runs" / name)
        export_to_repository(root / "runs" / name, root / "models", name)
    return root / "models", checkpoints


@pytest.fixture
def client(exported: tuple[Path, dict[str, Any]]) -> Any:
    with TestClient(create_app(Settings(repository=exported[0]))) as client:
        yield client


def inputs(checkpoint: Any, rows: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (checkpoint.input_mean + checkpoint.input_std * rng.normal(size=(rows, len(checkpoint.input_mean)))).astype(np.float32)


def test_exported_classifier_answers_like_the_reference_over_v2_binary(client: Any, exported: tuple[Path, dict[str, Any]]) -> None:
    checkpoint = exported[1]["digits"]
    x = inputs(checkpoint, 16)
    body, headers = binary_body({"input": x}, parameters={"binary_data_output": True})
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    _, arrays = decode_binary(response.content, int(response.headers["inference-header-content-length"]))
    reference = forward(checkpoint, x)
    np.testing.assert_allclose(arrays["output"], reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())


def test_exported_model_card_drives_the_v1_api(client: Any, exported: tuple[Path, dict[str, Any]]) -> None:
    checkpoint = exported[1]["digits"]
    x = inputs(checkpoint, 4)
    answer = client.post("/v1/models/digits:predict", content=orjson.dumps({"instances": x.tolist()})).json()
    assert answer["labels"] == checkpoint.labels
    probabilities = predict_proba(forward(checkpoint, x))
    assert [p["label"] for p in answer["predictions"]] == [checkpoint.labels[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], probabilities, atol=1e-3)
    config = client.get("/v2/models/digits/config").json()
    assert config["max_batch_size"] == 1024 and config["lutnet_model_card"]["task"] == "classification"


def test_exported_regressor_returns_destandardized_values(client: Any, exported: tuple[Path, dict[str, Any]]) -> None:
    checkpoint = exported[1]["wine-quality"]
    x = inputs(checkpoint, 5)
    answer = client.post("/v1/models/wine-quality:predict", content=orjson.dumps({"instances": x.tolist()})).json()
    reference = forward(checkpoint, x)[:, 0]
    np.testing.assert_allclose(answer["predictions"], reference, rtol=1e-3, atol=1e-3 * checkpoint.target_std)
