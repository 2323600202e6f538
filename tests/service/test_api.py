"""The HTTP API in process: every route, both tensor encodings, the /v1 API, statistics, metrics, docs."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import numpy as np
import orjson
import pytest
from onnx import TensorProto, helper

from lutnet.reference import predict_proba
from lutnet.service import dataplane
from lutnet.service.limits import ENVELOPE_BYTES, JSON_BYTES_PER_VALUE
from lutnet.service.protocol import decode_infer_request
from lutnet.service.runtime import ComputeCost
from tests.service.conftest import binary_body, decode_binary, infer_body
from tests.service.models import classifier, write_model

DIGITS_V2 = classifier(2)
HOUSING = classifier(3, inputs=8, outputs=1)


def expected(x: np.ndarray, weights: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    weight, bias = weights
    return x.astype(np.float64) @ weight.T.astype(np.float64) + bias


def rows(n: int, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 16, size=(n, width)).astype(np.float32)


def test_health_and_server_metadata(client: Any) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    metadata = client.get("/v2").json()
    assert metadata["name"] == "lutnet" and {"binary_tensor_data", "statistics", "model_repository"} <= set(metadata["extensions"])


def test_readiness_turns_false_when_shutdown_begins(client: Any) -> None:
    client.app.state.plane.begin_shutdown()
    response = client.get("/v2/health/ready")
    assert response.status_code == 503 and "shutting down" in response.json()["error"]
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/models/digits/ready").status_code == 503


def test_model_metadata_lists_versions_and_tensors(client: Any) -> None:
    metadata = client.get("/v2/models/digits").json()
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get("/v2/models/digits/versions/1").json()["versions"] == ["1"]
    assert client.get("/v2/models/digits/versions/1/ready").status_code == 200


def test_model_config_combines_config_pbtxt_and_settings(serve: Any) -> None:
    client = serve(batching=True)
    housing, digits = client.get("/v2/models/housing/config").json(), client.get("/v2/models/digits/config").json()
    assert housing["max_batch_size"] == 32 and housing["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert digits["max_batch_size"] == 1024 and digits["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert digits["lutnet_model_card"]["labels"] == [str(i) for i in range(10)] and digits["input"][0]["dims"] == [64]
    explicit = serve(max_batch_size=8, batching=False).get("/v2/models/housing/config").json()
    assert explicit["max_batch_size"] == 8 and "dynamic_batching" not in explicit


def test_json_infer_matches_numpy_and_echoes_id(client: Any) -> None:
    x = rows(3)
    response = client.post("/v2/models/digits/infer", content=infer_body(x, id="req-7"))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "digits" and body["model_version"] == "2"
    (output,) = body["outputs"]
    assert output["name"] == "output" and output["datatype"] == "FP32" and output["shape"] == [3, 10]
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 10), expected(x, DIGITS_V2), rtol=1e-5, atol=1e-4)


def test_versioned_infer_uses_that_version(client: Any) -> None:
    x = rows(1)
    body = client.post("/v2/models/digits/versions/1/infer", content=infer_body(x)).json()
    assert body["model_version"] == "1"
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]), expected(x, classifier(1))[0], rtol=1e-5, atol=1e-4)


def test_binary_tensors_both_ways_without_content_type(client: Any) -> None:
    x = rows(5)
    body, headers = binary_body({"input": x}, parameters={"binary_data_output": True})
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    header, arrays = decode_binary(response.content, int(response.headers["inference-header-content-length"]))
    assert header["outputs"][0]["shape"] == [5, 10] and "data" not in header["outputs"][0]
    np.testing.assert_allclose(arrays["output"], expected(x, DIGITS_V2), rtol=1e-5, atol=1e-4)


def test_binary_input_with_json_output_and_per_output_binary_flag(client: Any) -> None:
    x = rows(2)
    body, headers = binary_body({"input": x})
    plain = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert "inference-header-content-length" not in plain.headers
    np.testing.assert_allclose(np.array(plain.json()["outputs"][0]["data"]).reshape(2, 10), expected(x, DIGITS_V2), rtol=1e-5, atol=1e-4)
    asked = client.post("/v2/models/digits/infer", content=infer_body(x, outputs=[{"name": "output", "parameters": {"binary_data": True}}]))
    _, arrays = decode_binary(asked.content, int(asked.headers["inference-header-content-length"]))
    np.testing.assert_allclose(arrays["output"], expected(x, DIGITS_V2), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("datatype", "values"),
    [("INT64", np.arange(64).reshape(1, 64)), ("FP64", np.arange(64).reshape(1, 64) / 4), ("UINT8", np.arange(64).reshape(1, 64)), ("FP16", np.ones((1, 64)))],
)
def test_other_numeric_datatypes_are_cast_when_lossless(client: Any, datatype: str, values: np.ndarray) -> None:
    dtype = {"INT64": np.int64, "FP64": np.float64, "UINT8": np.uint8, "FP16": np.float16}[datatype]
    for body, headers in ((infer_body(values, datatype=datatype), {}), binary_body({"input": values.astype(dtype)}, datatype=datatype)):
        response = client.post("/v2/models/digits/infer", content=body, headers=headers)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(np.array(response.json()["outputs"][0]["data"]), expected(values, DIGITS_V2)[0], rtol=1e-5, atol=1e-4)


def bad_requests() -> list[tuple[str, bytes, dict[str, str], int, str]]:
    x = rows(1)
    good = orjson.loads(infer_body(x))
    tensor = good["inputs"][0]

    def with_input(**changes: Any) -> bytes:
        return orjson.dumps({"inputs": [{**tensor, **changes}]})

    nan_body, nan_headers = binary_body({"input": np.full((1, 64), np.nan, dtype=np.float32)})
    short_body, short_headers = binary_body({"input": x})
    bad_size = orjson.dumps({"inputs": [{**{k: v for k, v in tensor.items() if k != "data"}, "parameters": {"binary_data_size": 100}}]})
    return [
        ("empty body", b"", {}, 400, "empty body"),
        ("malformed JSON", b'{"inputs": [', {}, 400, "malformed JSON"),
        ("not an object", b"[1, 2]", {}, 400, "JSON object"),
        ("no inputs", b'{"inputs": []}', {}, 400, "non-empty list"),
        ("wrong tensor name", with_input(name="pixels"), {}, 400, "expected one of ['input'], got 'pixels'"),
        ("wrong shape", with_input(shape=[1, 63], data=x[0, :63].tolist()), {}, 400, "shape: expected [-1, 64], got [1, 63]"),
        ("element count", with_input(data=x[0, :60].tolist()), {}, 400, "expected 64 values for its shape, got 60 values"),
        ("non-numeric", with_input(data=["a"] * 64), {}, 400, "expected numbers"),
        ("ragged", with_input(data=[[1, 2], [3]]), {}, 400, "ragged"),
        ("NaN literal", infer_body(x).replace(b"[" + str(float(x[0, 0])).encode(), b"[NaN", 1), {}, 400, "NaN or Inf"),
        ("Inf in binary", nan_body, nan_headers, 400, "NaN or Inf"),
        ("BYTES", with_input(datatype="BYTES"), {}, 400, "BYTES (string tensors are not supported)"),
        ("unknown datatype", with_input(datatype="FP8"), {}, 400, "expected FP32 or another numeric type"),
        ("lossy cast", with_input(datatype="FP64", data=[0.1] * 64), {}, 400, "exactly representable as FP32"),
        ("fractional ints", with_input(datatype="INT32", data=[1.5] * 64), {}, 400, "exactly representable as INT32"),
        ("binary size", bad_size + b"\0" * 100, {"Inference-Header-Content-Length": str(len(bad_size))}, 400, "expected 256 bytes"),
        ("binary truncated", short_body[:-8], short_headers, 400, "256 bytes after byte"),
        ("binary trailing", short_body + b"\0\0\0\0", short_headers, 400, "binary tensor data: expected 256 bytes"),
        ("header length", infer_body(x), {"Inference-Header-Content-Length": "999999"}, 400, "Inference-Header-Content-Length"),
        ("header length text", infer_body(x), {"Inference-Header-Content-Length": "ten"}, 400, "Inference-Header-Content-Length"),
        ("duplicate input", orjson.dumps({"inputs": [tensor, tensor]}), {}, 400, "the same name twice"),
        ("unknown output", orjson.dumps({**good, "outputs": [{"name": "probs"}]}), {}, 400, "expected one of ['output'], got 'probs'"),
        ("numeric id", orjson.dumps({**good, "id": 7}), {}, 400, "'id': expected a string"),
        ("zero rows", with_input(shape=[0, 64], data=[]), {}, 400, "batch size: expected 1 to 1024 rows, got 0"),
        ("data and binary", with_input(parameters={"binary_data_size": 256}), {}, 400, "either 'data' or parameters.binary_data_size"),
    ]


@pytest.mark.parametrize(("case", "body", "headers", "status", "message"), bad_requests(), ids=[case[0] for case in bad_requests()])
def test_bad_infer_requests_get_one_json_error_and_the_server_keeps_serving(
    client: Any, case: str, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == status
    assert list(response.json()) == ["error"] and message in response.json()["error"], response.json()
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200


DEEP = 100_000  # nesting levels: past orjson's depth limit and Python's recursion limit


INFERENCE = ["/v2/models/digits/infer", "/v1/models/digits:predict"]
BODY_ROUTES = [*INFERENCE, "/v2/repository/index"]
CONFUSED_BODIES = [  # (case, routes, body)
    ("object as input name", INFERENCE, b'{"inputs": [{"name": {}, "shape": [], "datatype": "BOOL", "data": null}]}'),
    ("list as datatype", INFERENCE, b'{"inputs": [{"name": "input", "shape": [1, 64], "datatype": [], "data": null}]}'),
    ("nested inputs", INFERENCE, b'{"inputs": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
    ("nested data", INFERENCE, b'{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ' + b"[" * 1000 + b"]" * 1000 + b"}]}"),
    ("nested instances", INFERENCE, b'{"instances": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
    ("object as ready", BODY_ROUTES, b'{"ready": {"ready": []}}'),
    ("nested past the parser", BODY_ROUTES, b'{"inputs": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ("truncated", BODY_ROUTES, b'{"inputs": [{"name": "input", "shape": [1, 64], "datat'),
    ("not UTF-8", BODY_ROUTES, b'{"inputs": "\xff\xfe"}'),
]


@pytest.mark.parametrize(
    ("case", "path", "body"),
    [(case, path, body) for case, paths, body in CONFUSED_BODIES for path in paths],
    ids=[f"{case} {path}" for case, paths, _ in CONFUSED_BODIES for path in paths],
)
def test_type_confused_and_deeply_nested_bodies_get_400(client: Any, path: str, case: str, body: bytes) -> None:
    """Bodies that once were 500s (unhashable names, recursion) are the client's mistake on every route that reads a body."""
    response = client.post(path, content=body)
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"] and len(response.json()["error"]) < 400
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200


def test_a_negative_dimension_is_named_as_the_problem(client: Any) -> None:
    body = orjson.dumps({"inputs": [{"name": "input", "shape": [-1, 64], "datatype": "FP32", "data": [0.0] * 64}]})
    message = client.post("/v2/models/digits/infer", content=body).json()["error"]
    assert message == "input 'input' shape: expected a list of sizes >= 0 fitting [-1, 64] (where -1 stands for any size), got [-1, 64]"


def test_batch_over_the_models_max_batch_size_is_400(client: Any) -> None:
    response = client.post("/v2/models/housing/infer", content=infer_body(rows(33, width=8)))
    assert response.status_code == 400 and "batch size: expected 1 to 32 rows, got 33" in response.json()["error"]


def test_nonfinite_values_are_accepted_when_allowed(serve: Any) -> None:
    body, headers = binary_body({"input": np.full((1, 64), np.inf, dtype=np.float32)})
    response = serve(allow_nonfinite=True).post("/v2/models/digits/infer", content=body, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/v2/models/nope/infer", 404, "expected one of ['digits', 'housing'], got 'nope'"),
        ("/v2/models/digits/versions/7/infer", 404, "expected one of [1, 2], got 7"),
        ("/v2/models/digits/versions/latest/infer", 400, "model version: expected a positive integer"),
        ("/v2/models/a..b/infer", 400, "model name"),
        ("/v2/models/.hidden/infer", 400, "model name"),
        ("/v2/models/..%2F..%2Fetc/infer", 404, "no route"),
        ("/v1/models/nope:predict", 404, "got 'nope'"),
        ("/v3/anything", 404, "no route POST /v3/anything"),
    ],
)
def test_unknown_models_versions_and_routes(client: Any, url: str, status: int, message: str) -> None:
    response = client.post(url, content=infer_body(rows(1)))
    assert response.status_code == status and message in response.json()["error"], response.json()


def test_wrong_method_is_405_with_allow(client: Any) -> None:
    response = client.get("/v2/models/digits/infer")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert "method GET is not allowed" in response.json()["error"]
    assert client.delete("/v2/health/live").status_code == 405


def test_body_over_the_limit_is_413_by_length_and_by_stream(serve: Any) -> None:
    client = serve(max_request_bytes=2000)
    response = client.post("/v2/models/digits/infer", content=infer_body(rows(4)))
    assert response.status_code == 413 and "at most 2000 bytes" in response.json()["error"]
    streamed = client.post("/v2/models/digits/infer", content=iter([b"x" * 1200, b"x" * 1200]))
    assert streamed.status_code == 413 and "at most 2000 bytes" in streamed.json()["error"]
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200


def test_the_default_body_limit_follows_the_loaded_models(serve: Any) -> None:
    """Without max_request_bytes the limit is the largest request a loaded model accepts as JSON text, and it follows loads."""
    client = serve(api_token="s3cret")
    largest = ENVELOPE_BYTES + 1024 * 64 * JSON_BYTES_PER_VALUE  # digits: max batch 1024 of 64-value rows
    over = client.post("/v2/models/housing/infer", content=b" " * (largest + 1))
    assert over.status_code == 413 and f"at most {largest} bytes" in over.json()["error"]
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1024))).status_code == 200
    assert client.post("/v2/repository/models/digits/unload", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    housing = ENVELOPE_BYTES + 32 * 8 * JSON_BYTES_PER_VALUE  # the one model left: max batch 32 of 8-value rows
    over = client.post("/v2/models/housing/infer", content=b" " * (housing + 1))
    assert over.status_code == 413 and f"at most {housing} bytes" in over.json()["error"]
    assert client.post("/v2/repository/index", content=b" " * (housing + 1)).status_code == 413


def test_large_json_bodies_are_decoded_off_the_event_loop_and_binary_tensors_on_it(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_in: dict[int, int] = {}

    def recording(body: bytes, *args: Any, **kwargs: Any) -> Any:
        decoded_in[len(body)] = threading.get_ident()
        return decode_infer_request(body, *args, **kwargs)

    monkeypatch.setattr(dataplane, "decode_infer_request", recording)
    small, large = infer_body(rows(1)), infer_body(rows(256))
    binary, headers = binary_body({"input": rows(256)})  # as large, but its tensor is bytes after a small JSON header
    assert len(small) <= dataplane.THREAD_DECODE_BYTES < min(len(large), len(binary))
    loop_thread = client.portal.call(threading.get_ident)
    assert client.post("/v2/models/digits/infer", content=small).status_code == 200
    assert client.post("/v2/models/digits/infer", content=large).status_code == 200
    assert client.post("/v2/models/digits/infer", content=binary, headers=headers).status_code == 200
    assert decoded_in[len(small)] == loop_thread and decoded_in[len(large)] != loop_thread and decoded_in[len(binary)] == loop_thread


def test_v1_predict_classification_gives_labels_and_softmax(client: Any) -> None:
    x = rows(3)
    response = client.post("/v1/models/digits:predict", content=orjson.dumps({"instances": x.tolist()}))
    assert response.status_code == 200
    body = response.json()
    probabilities = predict_proba(expected(x, DIGITS_V2))
    assert body["labels"] == [str(i) for i in range(10)]
    for prediction, p in zip(body["predictions"], probabilities, strict=True):
        assert prediction["index"] == int(p.argmax()) and prediction["label"] == str(p.argmax())
        np.testing.assert_allclose(prediction["probabilities"], p, rtol=1e-4, atol=1e-6)


def test_v1_predict_takes_decimal_numbers_that_float32_rounds(client: Any) -> None:
    response = client.post("/v1/models/housing:predict", content=b'{"instances": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]}')
    x = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]], dtype=np.float32)
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["predictions"], expected(x, HOUSING)[:, 0], rtol=1e-5, atol=1e-5)


def test_v1_predict_regression_gives_values(client: Any) -> None:
    x = rows(4, width=8)
    body = client.post("/v1/models/housing:predict", content=orjson.dumps({"instances": x.tolist()})).json()
    assert "labels" not in body
    np.testing.assert_allclose(body["predictions"], expected(x, HOUSING)[:, 0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"rows": [[1]]}', '{"instances": [row, ...]}'),
        (b'{"instances": [[1, 2, 3]]}', "1 rows of 64 numbers"),
        (b'{"instances": [["x"]]}', "expected numbers"),
    ],
)
def test_v1_predict_bad_input(client: Any, body: bytes, message: str) -> None:
    response = client.post("/v1/models/digits:predict", content=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_statistics_count_requests_and_time(client: Any) -> None:
    for _ in range(3):
        client.post("/v2/models/digits/infer", content=infer_body(rows(2)))
    client.post("/v2/models/digits/infer", content=b"{")
    (stats,) = client.get("/v2/models/digits/versions/2/stats").json()["model_stats"]
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 3 and inference["fail"]["count"] == 1
    assert stats["inference_count"] == 6 and stats["execution_count"] == 3
    assert inference["compute_infer"]["ns"] > 0 and inference["success"]["ns"] >= inference["compute_infer"]["ns"]
    assert stats["batch_stats"][0]["batch_size"] == 2 and stats["batch_stats"][0]["compute_infer"]["count"] == 3
    assert stats["recent_latency"]["window"] == 3 and stats["recent_latency"]["p50_ms"] > 0
    everything = client.get("/v2/models/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in everything] == [("digits", "1"), ("digits", "2"), ("housing", "1")]
    assert [s["version"] for s in client.get("/v2/models/digits/stats").json()["model_stats"]] == ["1", "2"]
    summary = client.app.state.plane.registry.get("digits").stats.summary()
    assert summary.startswith("digits v2: 3 ok, 1 failed; last 3: p50 ") and " p95 " in summary and " p99 " in summary


def test_prometheus_metrics_come_from_the_apps_own_registry(serve: Any) -> None:
    first, second = serve(), serve()
    for _ in range(2):
        first.post("/v2/models/digits/infer", content=infer_body(rows(1)))
    first.post("/v2/models/digits/infer", content=b"")
    text = first.get("/metrics").text
    assert 'lutnet_requests_total{model="digits",outcome="success",version="2"} 2.0' in text
    assert 'lutnet_requests_total{model="digits",outcome="client_error",version="2"} 1.0' in text
    assert 'lutnet_request_duration_seconds_count{model="digits",version="2"} 2.0' in text
    assert 'lutnet_batch_size_bucket{le="1.0",model="digits",version="2"} 2.0' in text
    assert 'lutnet_batch_size_bucket{le="+Inf",model="digits",version="2"} 2.0' in text
    assert 'lutnet_requests_total{model="digits",outcome="success",version="2"} 0.0' in second.get("/metrics").text


def test_openapi_documents_every_route_and_the_infer_body(client: Any) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/ready", "/v2/models/{model_name}/config", "/v2/models/stats", "/v2/models/{model_name}/versions/{model_version}/stats",
        "/v2/repository/index", "/v2/repository/models/{model_name}/load", "/v2/repository/models/{model_name}/unload",
        "/v1/models/{model_name}:predict", "/metrics",
    ):  # fmt: skip
        assert path in paths, path
    infer = paths["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == ["model_name", "model_version"]
    reference = infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    schemas = document["components"]["schemas"]
    assert reference == "InferRequest" and {"inputs", "outputs", "id", "parameters"} <= set(schemas["InferRequest"]["properties"])
    assert "InferInput" in schemas and "InferResponse" in schemas and "ErrorBody" in schemas
    assert "binary_data_size" in str(schemas["InferInput"])
    assert client.get("/docs").status_code == 200


def test_repository_index_unload_and_load(serve: Any) -> None:
    client = serve(api_token="s3cret")
    token = {"Authorization": "Bearer s3cret"}
    index = client.post("/v2/repository/index").json()
    assert [(e["name"], e["version"], e["state"]) for e in index] == [("digits", "1", "READY"), ("digits", "2", "READY"), ("housing", "1", "READY")]
    assert client.post("/v2/repository/models/digits/unload", headers=token).status_code == 200
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 404
    assert client.post("/v2/repository/index", content=b'{"ready": true}').json() == [{"name": "housing", "version": "1", "state": "READY", "reason": ""}]
    assert {e["reason"] for e in client.post("/v2/repository/index").json() if e["name"] == "digits"} == {"unloaded"}
    assert client.post("/v2/repository/models/digits/load", headers=token).status_code == 200
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200
    assert client.post("/v2/repository/models/nothing/load", headers=token).status_code == 404
    assert client.post("/v2/repository/index", content=b'{"ready": 3}').status_code == 400


def test_load_and_unload_are_refused_without_a_configured_token(client: Any) -> None:
    """Safe by default: with no LUTNET_API_TOKEN, repository control is 403 whatever the client sends, and nothing changes."""
    for route in ("unload", "load"):
        for headers in ({}, {"Authorization": "Bearer anything"}):
            response = client.post(f"/v2/repository/models/digits/{route}", headers=headers)
            assert response.status_code == 403 and "set LUTNET_API_TOKEN" in response.json()["error"], response.json()
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200


def test_api_token_guards_load_and_unload(serve: Any) -> None:
    client = serve(api_token="s3cret")
    for route in ("unload", "load"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = client.post(f"/v2/repository/models/digits/{route}", headers=headers)
            assert response.status_code == 401 and "Authorization: Bearer" in response.json()["error"]
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200
    assert client.post("/v2/repository/models/digits/unload", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/v2/repository/models/digits/load", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("execution", ["auto", "inline", "thread"])
@pytest.mark.parametrize("batching", [False, True])
def test_every_execution_mode_gives_the_same_answers(serve: Any, execution: str, batching: bool) -> None:
    client = serve(execution=execution, batching=batching, max_queue_delay_us=500)
    x = rows(6, seed=5)
    body, headers = binary_body({"input": x}, parameters={"binary_data_output": True})
    response = client.post("/v2/models/digits/infer", content=body, headers=headers)
    _, arrays = decode_binary(response.content, int(response.headers["inference-header-content-length"]))
    np.testing.assert_allclose(arrays["output"], expected(x, DIGITS_V2), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("execution", "inline_below_us", "small_in_thread", "large_in_thread"),
    [("auto", 1e9, False, False), ("auto", 0.0, True, True), ("inline", 0.0, False, False), ("thread", 1e9, True, True)],
)
def test_calls_run_on_the_loop_or_in_a_compute_thread_as_configured(
    serve: Any, execution: str, inline_below_us: float, small_in_thread: bool, large_in_thread: bool
) -> None:
    client = serve(execution=execution, inline_below_us=inline_below_us, batching=False)
    model = client.app.state.plane.registry.get("digits")
    assert model.cost.fixed_ns > 0 and model.cost.per_row_ns >= 0  # the warm-up timed both batch sizes
    threads: list[str] = []
    run = model.run
    model.run = lambda feeds: (threads.append(threading.current_thread().name), run(feeds))[1]
    for n in (1, 64):
        body, headers = binary_body({"input": rows(n)}, parameters={"binary_data_output": True})
        assert client.post("/v2/models/digits/infer", content=body, headers=headers).status_code == 200
    assert [name.startswith("onnxruntime") for name in threads] == [small_in_thread, large_in_thread]


def test_auto_execution_computes_a_lone_request_on_the_loop_and_queued_ones_in_a_thread(serve: Any) -> None:
    """Under traffic the loop keeps reading requests: what queued behind a running request computes in a thread."""
    client = serve(execution="auto", inline_below_us=1e9, batching=True)  # every size is predicted cheap enough for the loop
    model = client.app.state.plane.registry.get("digits")
    calls: list[tuple[int, str]] = []
    run = model.run
    model.run = lambda feeds: (calls.append((len(feeds["input"]), threading.current_thread().name)), run(feeds))[1]
    inputs = [rows(1, seed=i) for i in range(5)]

    async def burst() -> list[Any]:  # five requests read in one pass of the event loop
        return await asyncio.gather(*(model.infer({"input": x}, 1) for x in inputs))

    results = client.portal.call(burst)
    assert [rows for rows, _ in calls] == [1, 4]
    assert not calls[0][1].startswith("onnxruntime") and calls[1][1].startswith("onnxruntime"), calls
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_allclose(result.outputs[0], expected(x, DIGITS_V2), rtol=1e-5, atol=1e-4)


def test_an_unexpected_error_on_a_hot_route_is_a_logged_json_500_and_the_server_goes_on(
    client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plane = client.app.state.plane

    async def broken(*args: Any) -> Any:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(plane, "infer", broken)
        response = client.post("/v2/models/digits/infer", content=infer_body(rows(1)))
    assert response.status_code == 500 and response.json() == {"error": "internal server error (RuntimeError); see the server log"}
    assert any("unexpected error on POST /v2/models/digits/infer" in record.message for record in caplog.records)
    assert client.post("/v2/models/digits/infer", content=infer_body(rows(1))).status_code == 200


def test_startup_moves_long_lived_objects_out_of_the_collectors_sight(serve: Any) -> None:
    gc.unfreeze()
    serve()
    assert gc.get_freeze_count() > 10_000  # full collections no longer walk the framework's objects: a shorter latency tail


def test_auto_execution_runs_small_batches_on_the_loop_and_large_ones_in_a_thread() -> None:
    cost = ComputeCost(fixed_ns=15_000, per_row_ns=2_000)
    assert cost.rows_within(100_000, 1024) == 43  # 15 us for one row + 42 more x 2 us = 99 us
    assert cost.rows_within(100_000, 10) == 10 and cost.rows_within(16_000, 1024) == 1 and cost.rows_within(14_000, 1024) == 0
    assert ComputeCost(5_000, 0.0).rows_within(100_000, 1024) == 1024


def test_a_foreign_model_without_card_or_fixed_row_shape_runs_requests_as_sent(repository: Any, serve: Any) -> None:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    write_model(repository, "scale", 1, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    client = serve(batching=True)
    assert client.get("/v2/models/scale").json()["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    assert "dynamic_batching" not in client.get("/v2/models/scale/config").json()
    for width in (3, 5):
        x = np.arange(2 * width, dtype=np.float32).reshape(2, width)
        body = client.post("/v2/models/scale/infer", content=infer_body(x, name="x")).json()
        assert body["outputs"][0]["shape"] == [2, width] and body["outputs"][0]["data"] == (2 * x).reshape(-1).tolist()
    assert client.post("/v1/models/scale:predict", content=b'{"instances": [[1, 2, 3]]}').json()["predictions"] == [[2, 4, 6]]


def test_recent_percentiles_are_logged_periodically_for_models_with_traffic(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lutnet")
    client = serve(stats_log_s=0.05)
    client.post("/v2/models/digits/infer", content=infer_body(rows(1)))
    time.sleep(0.3)
    lines = [record.getMessage() for record in caplog.records if record.name == "lutnet.serve"]
    assert any(line.startswith("digits v2: 1 ok, 0 failed; last 1: p50 ") and "p99" in line for line in lines), lines
    assert not any(line.startswith("housing") for line in lines)
