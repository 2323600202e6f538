"""The model registry: loading, atomic swaps with in-flight requests, failed loads, polling, path safety."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from lutnet.service.errors import BadRequest, ModelLoadError, NotFound, Unavailable
from lutnet.service.metrics import ServiceMetrics
from lutnet.service.repository import ModelRegistry, check_name, check_version
from lutnet.service.settings import Settings
from tests.service.models import card, classifier, gemm_model, write_model


def registry_for(repository: Path, **settings: object) -> ModelRegistry:
    return ModelRegistry(repository, Settings(repository=repository, **settings), ServiceMetrics(16))


def digits(seed: int) -> bytes:
    weight, bias = classifier(seed)
    return gemm_model(weight, bias, card("classification", 64, 10, [str(i) for i in range(10)])).SerializeToString()


def replace_model(repository: Path, name: str, version: int, blob: bytes) -> None:
    """Overwrite a model file and move its mtime forward, as a new export would."""
    path = write_model(repository, name, version, blob)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def expected(seed: int, x: np.ndarray) -> np.ndarray:
    weight, bias = classifier(seed)
    return x @ weight.T + bias


X = np.linspace(0, 16, 128, dtype=np.float32).reshape(2, 64)


@pytest.mark.parametrize("name", ["digits", "digits-v1.2_x", "A", "9lives"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "a..b", ".hidden", "a/b", "../etc", "a b", "x" * 129, "ümlaut"])
def test_names_that_could_leave_the_repository_are_rejected(name: str) -> None:
    with pytest.raises(BadRequest, match="model name"):
        check_name(name)


@pytest.mark.parametrize("version", ["-1", "1.0", "latest", "", "1" * 19])
def test_bad_versions_are_rejected(version: str) -> None:
    with pytest.raises(BadRequest, match="model version"):
        check_version(version)


def test_newest_version_is_the_default_and_every_version_is_addressable(repository: Path) -> None:
    async def scenario() -> None:
        registry = registry_for(repository)
        assert await registry.start() == []
        assert registry.get("digits").version == 2 and registry.get("digits", "1").version == 1
        assert registry.versions("digits") == [1, 2]
        with pytest.raises(NotFound):
            registry.get("digits", "3")
        await registry.close()

    asyncio.run(scenario())


def test_in_flight_request_finishes_on_the_old_version_while_a_reload_swaps(repository: Path) -> None:
    async def scenario() -> None:
        registry = registry_for(repository, batching=True, max_queue_delay_us=300_000)
        await registry.start()
        old = registry.get("digits")
        in_flight = asyncio.create_task(old.infer({"input": X}, 2))
        await asyncio.sleep(0.02)  # queued in the old version's batching queue, waiting for company
        replace_model(repository, "digits", 2, digits(seed=9))
        await registry.load("digits")
        new = registry.get("digits")
        assert new is not old and new.version == 2
        np.testing.assert_allclose((await in_flight).outputs[0], expected(2, X), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose((await new.infer({"input": X}, 2)).outputs[0], expected(9, X), rtol=1e-5, atol=1e-4)
        assert registry.get("digits", "1") is not None
        await registry.close()

    asyncio.run(scenario())


def test_failed_load_is_reported_and_the_previous_version_keeps_serving(repository: Path) -> None:
    async def scenario() -> None:
        registry = registry_for(repository)
        await registry.start()
        serving = registry.get("digits")
        write_model(repository, "digits", 3, b"not an onnx model")
        with pytest.raises(ModelLoadError, match="failed to load model digits: version 3") as failure:
            await registry.load("digits")
        assert failure.value.status_code == 400
        assert registry.get("digits") is serving
        with pytest.raises(Unavailable, match="version 3 is not ready"):
            registry.get("digits", "3")
        index = {(e["name"], e["version"]): e for e in await registry.index()}
        assert index["digits", "3"]["state"] == "UNAVAILABLE" and "ONNX model onnxruntime can load" in index["digits", "3"]["reason"]
        replace_model(repository, "digits", 2, b"corrupted too")
        with pytest.raises(ModelLoadError, match="version 2"):
            await registry.load("digits")
        assert registry.get("digits", "2") is serving
        await registry.close()

    asyncio.run(scenario())


def test_polling_loads_new_versions_drops_removed_ones_and_retries_a_failure_only_when_it_changes(repository: Path) -> None:
    async def scenario() -> None:
        registry = registry_for(repository)
        await registry.start()
        write_model(repository, "digits", 3, b"broken")
        assert len(await registry.sync()) == 1
        assert await registry.sync() == []  # unchanged broken file: not retried on every poll
        replace_model(repository, "digits", 3, digits(seed=3))
        assert await registry.sync() == []
        assert registry.get("digits").version == 3
        for path in (repository / "digits" / "1").iterdir():
            path.unlink()
        (repository / "digits" / "1").rmdir()
        await registry.sync()
        assert registry.versions("digits") == [2, 3]
        await registry.unload("housing")
        await registry.sync()
        with pytest.raises(NotFound):
            registry.get("housing")
        await registry.close()

    asyncio.run(scenario())


def test_only_model_files_inside_the_repository_are_served(repository: Path, tmp_path: Path) -> None:
    outside = write_model(tmp_path / "elsewhere", "secret", 1, digits(seed=4))
    (repository / "digits" / "5").mkdir()
    (repository / "digits" / "5" / "model.onnx").symlink_to(outside)
    (repository / "linked").symlink_to(outside.parent.parent, target_is_directory=True)
    write_model(repository, ".digits.123.staging", 1, digits(seed=4))
    write_model(repository, "bad name", 1, digits(seed=4))

    async def scenario() -> None:
        registry = registry_for(repository)
        await registry.start()
        assert sorted(m.name for m in registry.defaults()) == ["digits", "housing"]
        assert registry.versions("digits") == [1, 2]
        await registry.close()

    asyncio.run(scenario())


def test_unknown_model_lists_the_known_ones(repository: Path) -> None:
    async def scenario() -> None:
        registry = registry_for(repository)
        await registry.start()
        with pytest.raises(NotFound, match=r"expected one of \['digits', 'housing'\], got 'mnist'"):
            registry.get("mnist")
        with pytest.raises(NotFound, match="model directory"):
            await registry.load("mnist")
        await registry.close()

    asyncio.run(scenario())
