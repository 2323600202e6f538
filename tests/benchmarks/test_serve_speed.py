"""serve_speed plumbing: the request bodies wrk sends are valid, the baseline answers, targets come from the medians."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import orjson

from benchmarks.serve_speed import SCENARIOS, TARGETS, bare_app, bodies, derived, export_digits, served_model
from lutnet import metadata

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 here; httpx is what the project installs
    from fastapi.testclient import TestClient


def test_bodies_are_well_formed_v2_requests(tmp_path: Path) -> None:
    files = bodies(tmp_path)
    assert {scenario.body for scenario in SCENARIOS} <= set(files)
    json_b256 = orjson.loads(files["json_b256"][0].read_bytes())
    assert json_b256["inputs"][0]["shape"] == [256, 64] and len(json_b256["inputs"][0]["data"]) == 256 * 64
    content, headers = files["binary_b256"][0].read_bytes(), files["binary_b256"][1]
    header_length = int(headers["Inference-Header-Content-Length"])
    header = orjson.loads(content[:header_length])
    assert "Content-Type" not in headers and header["parameters"]["binary_data_output"] is True
    values = np.frombuffer(content[header_length:], dtype=np.float32)
    np.testing.assert_array_equal(values, np.array(json_b256["inputs"][0]["data"], dtype=np.float32))


def test_bare_baseline_returns_a_constant() -> None:
    with TestClient(bare_app()) as client:
        assert client.post("/constant", content=b"{}").json() == {"status": "ok"}


def test_targets_are_judged_from_the_medians() -> None:
    medians = {s.name: {"requests_per_second": 1000.0, "p99_ms": 5.0, "server_cpu_us_per_request": 100.0} for s in SCENARIOS}
    medians["v2_json_b1_c1"]["requests_per_second"] = 700.0
    medians["v2_binary_b256_c1"]["requests_per_second"] = 2500.0
    result = derived(medians)
    assert result["targets"] == TARGETS
    assert result["comparisons"]["json_c1_vs_bare"] == 0.7 and result["targets_met"] == {
        "json_c1_vs_bare": False,
        "p99_c64_ms": True,
        "binary_vs_json_b256": True,
        "json_c1_vs_lean": False,
        "json_c64_vs_lean": True,
    }


def test_the_served_model_is_the_lut_digits_model_beside_its_relu_twin(tmp_path: Path, monkeypatch) -> None:
    import onnx

    from benchmarks import serve_speed, serving

    monkeypatch.setattr(serve_speed, "WORK", tmp_path)
    repository = export_digits(tmp_path / "digits")
    assert sorted(p.name for p in repository.iterdir()) == ["digits", "digits_relu"]
    activations = {}
    for name in ("digits", "digits_relu"):
        card = {p.key: p.value for p in onnx.load(repository / name / "1" / "model.onnx").metadata_props}
        activations[name] = card[metadata.ACTIVATION]
    assert activations == {"digits": "lut", "digits_relu": "relu"}
    assert served_model(repository) == serving.served_model() == repository / "digits" / "1" / "model.onnx"  # what the peers serve
