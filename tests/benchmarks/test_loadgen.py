"""The load generator against a real uvicorn server on 127.0.0.1: counts, errors, bounds and percentiles."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.loadgen import measure, percentile, prepared_request
from lutnet.errors import LutnetError


def constant_app() -> FastAPI:
    app = FastAPI()
    app.state.bodies = []

    @app.post("/ok")
    async def ok(payload: dict) -> dict:
        app.state.bodies.append(payload)
        return {"ok": True}

    @app.post("/fail")
    async def fail() -> Response:
        return Response(status_code=500)

    @app.post("/chunked")
    async def chunked() -> StreamingResponse:
        return StreamingResponse(iter([b"abc", b"defgh"]))

    return app


@pytest.fixture(scope="module")
def server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = constant_app()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", app
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_every_counted_request_reached_the_server_with_its_body(server):
    base, app = server
    app.state.bodies.clear()
    result = measure(base + "/ok", b'{"x": [1, 2]}', concurrency=4, duration_s=5.0, max_requests=200)
    assert result.requests == 200 and result.errors == 0 and result.concurrency == 4
    assert len(app.state.bodies) >= 200 and all(body == {"x": [1, 2]} for body in app.state.bodies)
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms
    assert result.requests_per_second == pytest.approx(result.requests / result.seconds)


@pytest.mark.slow
def test_duration_bounds_the_run(server):
    base, _ = server
    started = time.perf_counter()
    result = measure(base + "/ok", b"{}", concurrency=2, duration_s=0.5)
    assert 0.5 <= result.seconds < 1.5 and time.perf_counter() - started < 3.0
    assert result.requests > 0


@pytest.mark.slow
def test_non_2xx_answers_are_errors_not_latencies(server):
    base, _ = server
    result = measure(base + "/fail", b"{}", concurrency=1, duration_s=2.0, max_requests=20)
    assert (result.requests, result.errors) == (0, 20)
    assert np.isnan(result.p50_ms)


@pytest.mark.slow
def test_chunked_answers_are_read_whole_and_the_connection_reused(server):
    base, _ = server
    result = measure(base + "/chunked", b"{}", concurrency=1, duration_s=2.0, max_requests=30)
    assert (result.requests, result.errors) == (30, 0)


def test_only_plain_http_urls_are_accepted():
    with pytest.raises(LutnetError, match="expected http://HOST:PORT/PATH, got https://example.org/x"):
        prepared_request("https://example.org/x", b"", "application/json")


def test_request_bytes_carry_path_length_and_body():
    host, port, request = prepared_request("http://127.0.0.1:8123/v2/models/m/infer", b"{}", "application/json")
    assert (host, port) == ("127.0.0.1", 8123)
    assert request.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\n") and b"Content-Length: 2\r\n" in request and request.endswith(b"\r\n\r\n{}")


@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=200), st.sampled_from([0.5, 0.95, 0.99]))
def test_percentile_is_numpys_nearest_rank(values, fraction):
    """The percentile is the inverted-CDF (nearest-rank) percentile numpy computes."""
    ordered = sorted(values)
    assert percentile(ordered, fraction) == np.quantile(ordered, fraction, method="inverted_cdf")
