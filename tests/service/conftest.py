"""Fixtures of the service tests: a repository of small ONNX models and an in-process client with the lifespan run."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from lutnet.service.app import create_app
from lutnet.service.settings import Settings
from tests.service.models import build_repository

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 here; httpx is what the project installs
    from fastapi.testclient import TestClient


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return build_repository(tmp_path / "models")


@pytest.fixture
def serve(repository: Path) -> Iterator[Any]:
    """``serve(**settings)`` -> a TestClient of an app over ``repository``; models load in its lifespan."""
    clients: list[TestClient] = []

    def start(**settings: Any) -> TestClient:
        client = TestClient(create_app(Settings(repository=repository, **settings)), raise_server_exceptions=True)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(serve: Any) -> TestClient:
    return serve()


def infer_body(x: np.ndarray, *, datatype: str = "FP32", name: str = "input", **extra: Any) -> bytes:
    """A JSON v2 infer body for one input."""
    return orjson.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.reshape(-1).tolist()}], **extra})


def binary_body(arrays: dict[str, np.ndarray], datatype: str = "FP32", **extra: Any) -> tuple[bytes, dict[str, str]]:
    """A v2 infer body with the binary tensor data extension, and its headers (no Content-Type, as tritonclient sends)."""
    inputs = [
        {"name": name, "shape": list(array.shape), "datatype": datatype, "parameters": {"binary_data_size": array.nbytes}} for name, array in arrays.items()
    ]
    header = orjson.dumps({"inputs": inputs, **extra})
    return header + b"".join(array.tobytes() for array in arrays.values()), {"Inference-Header-Content-Length": str(len(header))}


def decode_binary(body: bytes, header_length: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a binary v2 response into its JSON header and its output arrays."""
    header = orjson.loads(body[:header_length])
    arrays, offset = {}, header_length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[output["datatype"]]
        arrays[output["name"]] = np.frombuffer(body[offset : offset + size], dtype=dtype).reshape(output["shape"])
        offset += size
    assert offset == len(body)
    return header, arrays
