"""End to end against a real uvicorn server on 127.0.0.1: binary tensors without a content type, concurrency,
the printed curl example, hot reload by polling, SIGTERM draining, and the unmodified Triton client."""

from __future__ import annotations

import asyncio
import http.client
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from tests.service.conftest import binary_body, decode_binary, infer_body
from tests.service.models import build_repository, card, classifier, gemm_model, write_model
from tests.service.server import Server

pytestmark = pytest.mark.slow


def expected(seed: int, x: np.ndarray, inputs: int = 64, outputs: int = 10) -> np.ndarray:
    weight, bias = classifier(seed, inputs, outputs)
    return x.astype(np.float64) @ weight.T + bias


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("served")
    running = Server(build_repository(root / "models"), "--batching", "--max-queue-delay-us", "2000", log=root / "server.log")
    yield running
    assert running.stop(), running.output()


def test_binary_tensors_without_content_type_then_errors_do_not_stop_the_server(server: Server) -> None:
    x = np.random.default_rng(1).uniform(0, 16, (4, 64)).astype(np.float32)
    body, headers = binary_body({"input": x}, parameters={"binary_data_output": True})
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", "/v2/models/digits/infer", body=body, headers=headers)  # http.client adds no Content-Type
    response = connection.getresponse()
    payload = response.read()
    assert response.status == 200, payload
    _, arrays = decode_binary(payload, int(response.getheader("Inference-Header-Content-Length")))
    np.testing.assert_allclose(arrays["output"], expected(2, x), rtol=1e-5, atol=1e-4)
    for bad, bad_headers in ((b"", {}), (b"{", {}), (body[:-3], headers)):
        connection.request("POST", "/v2/models/digits/infer", body=bad, headers=bad_headers)
        failed = connection.getresponse()
        assert failed.status == 400 and "error" in orjson.loads(failed.read())
    connection.request("POST", "/v2/models/digits/infer", body=body, headers=headers)
    assert connection.getresponse().status == 200


def test_64_concurrent_clients_each_get_their_own_answer(server: Server) -> None:
    inputs = [np.full((1, 64), i / 8, dtype=np.float32) for i in range(192)]

    async def load() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            return await asyncio.gather(*(client.post("/v2/models/digits/infer", content=infer_body(x)) for x in inputs))

    responses = asyncio.run(load())
    for x, response in zip(inputs, responses, strict=True):
        assert response.status_code == 200
        np.testing.assert_allclose(response.json()["outputs"][0]["data"], expected(2, x)[0], rtol=1e-5, atol=1e-4)
    (stats,) = httpx.get(f"{server.url}/v2/models/digits/versions/2/stats").json()["model_stats"]
    assert stats["inference_stats"]["success"]["count"] >= len(inputs)
    assert stats["execution_count"] < stats["inference_stats"]["success"]["count"]  # batching merged some requests


def test_printed_curl_example_works(server: Server) -> None:
    commands = re.findall(r"(curl -s \S+/v1/models/digits:predict -d '.*')", server.output())
    assert commands, server.output()
    result = subprocess.run(shlex.split(commands[0]), capture_output=True, text=True, timeout=30, check=True)
    answer = orjson.loads(result.stdout)
    assert re.search(r"loaded model digits version 2: classification.*warm-up compute p50 [0-9.]+ ms p95 [0-9.]+ ms p99 [0-9.]+ ms", server.output())
    assert answer["labels"] == [str(i) for i in range(10)]
    assert answer["predictions"][0]["index"] == int(expected(2, np.zeros((1, 64)))[0].argmax())


def test_polling_hot_reloads_a_new_version_and_reports_a_broken_one(tmp_path: Path) -> None:
    repository = build_repository(tmp_path / "models")
    server = Server(repository, "--poll", "0.2", log=tmp_path / "server.log")
    try:
        weight, bias = classifier(3)
        write_model(repository, "digits", 3, gemm_model(weight, bias, card("classification", 64, 10, [str(i) for i in range(10)])))
        x = np.ones((1, 64), dtype=np.float32)
        assert _eventually(lambda: httpx.get(f"{server.url}/v2/models/digits").json()["versions"] == ["1", "2", "3"])
        body = httpx.post(f"{server.url}/v2/models/digits/infer", content=infer_body(x)).json()
        assert body["model_version"] == "3"
        np.testing.assert_allclose(body["outputs"][0]["data"], expected(3, x)[0], rtol=1e-5, atol=1e-4)
        write_model(repository, "digits", 4, b"half-written garbage")
        assert _eventually(lambda: any(e["version"] == "4" and e["state"] == "UNAVAILABLE" for e in httpx.post(f"{server.url}/v2/repository/index").json()))
        assert httpx.post(f"{server.url}/v2/models/digits/infer", content=infer_body(x)).json()["model_version"] == "3"
    finally:
        assert server.stop(), server.output()


def test_sigterm_turns_readiness_false_and_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    # A 3 s batching delay keeps one request in flight while the server is told to stop.
    flags = ("--batching", "--max-queue-delay-us", "3000000", "--shutdown-grace", "10")
    server = Server(build_repository(tmp_path / "models"), *flags, log=tmp_path / "server.log")
    x = np.full((1, 64), 3.0, dtype=np.float32)
    answers: list[httpx.Response] = []
    in_flight = threading.Thread(target=lambda: answers.append(httpx.post(f"{server.url}/v2/models/digits/infer", content=infer_body(x), timeout=20)))
    in_flight.start()
    time.sleep(1.0)
    started = time.monotonic()
    server.terminate()
    try:
        ready = httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code
    except httpx.TransportError:
        ready = None  # the listener is already closed: also not ready
    assert ready in (503, None)
    in_flight.join(timeout=20)
    server.process.wait(timeout=15)
    assert server.exited_cleanly(), server.output()
    assert answers and answers[0].status_code == 200, server.output()
    np.testing.assert_allclose(answers[0].json()["outputs"][0]["data"], expected(2, x)[0], rtol=1e-5, atol=1e-4)
    assert time.monotonic() - started < 10
    assert "SIGTERM: readiness is false" in server.output()


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds the wait)."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("path", ["/v2/models/digits/infer", "/v2/repository/index"])
def test_a_client_that_stops_halfway_through_a_body_gets_408_and_its_connection_closed(tmp_path: Path, path: str) -> None:
    """A stalled body is cut off after --body-timeout on the fast path and on FastAPI's routes; everyone else is served meanwhile,
    and a client that hangs up halfway costs nothing either."""
    server = Server(build_repository(tmp_path / "models"), "--body-timeout", "1", log=tmp_path / "server.log")
    body = infer_body(np.zeros((1, 64), dtype=np.float32))
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as hung_up:
            hung_up.sendall(head + body[: len(body) // 2])
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stalled:
            stalled.sendall(head + body[: len(body) // 2])
            assert httpx.post(f"{server.url}/v2/models/digits/infer", content=body, timeout=10).status_code == 200
            reply = read_until_closed(stalled)
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b'"error":"request body: expected the whole body within 1 s (LUTNET_BODY_TIMEOUT_S)' in reply, reply
        assert httpx.post(f"{server.url}/v2/models/digits/infer", content=body, timeout=10).status_code == 200
    finally:
        assert server.stop(), server.output()
    assert "Traceback" not in server.output(), server.output()


def test_the_unmodified_triton_client_works_with_binary_and_json_tensors(server: Server) -> None:
    httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert client.get_model_metadata("digits")["inputs"][0]["shape"] == [-1, 64]
    x = np.random.default_rng(2).uniform(0, 16, (3, 64)).astype(np.float32)
    for binary in (True, False):
        tensor = httpclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("digits", [tensor], outputs=[httpclient.InferRequestedOutput("output", binary_data=binary)], request_id=f"r-{binary}")
        np.testing.assert_allclose(result.as_numpy("output"), expected(2, x), rtol=1e-5, atol=1e-4)
        assert result.get_response()["id"] == f"r-{binary}"
    with pytest.raises(InferenceServerException, match="expected one of"):
        client.infer("no-such-model", [tensor])
    assert client.get_inference_statistics("digits")["model_stats"][0]["name"] == "digits"
    assert {entry["name"] for entry in client.get_model_repository_index()} == {"digits", "housing"}


def _eventually(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False
