"""Input range and saturation monitors: counters against numpy, served statistics and Prometheus series against the reference."""

from __future__ import annotations

import json

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client.parser import text_string_to_metric_families

from lutnet import metadata, reference
from lutnet.checkpoint import write_checkpoint
from lutnet.ranges import CHECKPOINT_KEY, InputRange
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.exporter import export_to_repository
from lutnet.export.verify import probe_inputs
from lutnet.service.app import create_app
from lutnet.service.metrics import ModelStats
from lutnet.service.monitor import RangeCounts, SaturationWindow
from lutnet.service.settings import Settings
from tests.export.checkpoints import random_checkpoint
from tests.service.conftest import TestClient, infer_body

FEATURES = 12


@st.composite
def batches(draw: st.DrawFn) -> list[np.ndarray]:
    rows = st.integers(1, 9).map(lambda n: (n, FEATURES))
    values = st.floats(-4, 4, width=32)
    return draw(st.lists(hnp.arrays(np.float32, rows, elements=values), min_size=1, max_size=6))


@settings(max_examples=60, deadline=None)
@given(batches=batches(), seed=st.integers(0, 2**16))
def test_range_counts_equal_numpy(batches: list[np.ndarray], seed: int) -> None:
    """Over any sequence of batches (checked in passes of several): rows, out-of-range rows and per-feature below/above counts are
    numpy's on the stacked rows, and the recent window holds the last requests'."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-3, 0, FEATURES).astype(np.float32)
    hi = (lo + rng.uniform(0, 3, FEATURES)).astype(np.float32)
    counts = RangeCounts(FEATURES, (0.5, 99.5), window=3, bounds=(lo, hi))
    for batch in batches:
        counts.record(batch)
    every = np.concatenate(batches)
    outside = (every < lo) | (every > hi)
    assert counts.rows == len(every)
    assert counts.out_of_range_rows == outside.any(axis=1).sum()
    np.testing.assert_array_equal(counts.below, (every < lo).sum(axis=0))
    np.testing.assert_array_equal(counts.above, (every > hi).sum(axis=0))
    recent = np.concatenate(batches[-3:])
    assert counts.recent_fraction() == pytest.approx(((recent < lo) | (recent > hi)).any(axis=1).mean())
    features = counts.to_dict()["features"]
    totals = [f["below"] + f["above"] for f in features]
    assert totals == sorted(totals, reverse=True) and len(features) == np.count_nonzero(outside.sum(axis=0))


def test_saturation_window_weights_samples_by_rows_and_forgets_old_ones() -> None:
    window = SaturationWindow(2, window=2)
    assert window.ratios() is None
    for rows, fractions in ((10, [1.0, 1.0]), (1, [0.0, 1.0]), (3, [0.5, 0.0])):
        window.record(rows, np.array(fractions))
    assert window.ratios() == pytest.approx([1.5 / 4, 1 / 4])


def test_combined_stats_add_up_workers() -> None:
    """The counts of two workers' states add up; their recent windows join."""
    workers = []
    for rows in (3, 5):
        stats = ModelStats(8, "m", 1)
        stats.range = RangeCounts(2, (0.5, 99.5), 8, bounds=(np.zeros(2, np.float32), np.ones(2, np.float32)))
        for _ in range(rows):
            stats.record_success(1000, 10, 20, 30, 40, 1)
            stats.record_execution(1, 30)
            stats.range.record(np.array([[5.0, 0.0]], np.float32))
        stats.record_failure(total_ns=5, status_code=400)
        workers.append(orjson.loads(orjson.dumps(stats.state())))
    combined = ModelStats.combined(workers).to_triton()
    assert combined["inference_count"] == 8 and combined["execution_count"] == 8
    assert combined["inference_stats"]["success"]["count"] == 8 and combined["inference_stats"]["fail"] == {"count": 2, "ns": 10}
    assert combined["recent_latency"]["window"] == 8
    assert combined["input_range"]["rows"] == 8 and combined["input_range"]["features"] == [{"feature": 0, "below": 0, "above": 8}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, InputRange]:
    """A LUT model exported with an input range (and its monitor graph), and an older one without a range."""
    root = tmp_path_factory.mktemp("monitored")
    checkpoint = random_checkpoint(ModelSpec(family="mlp", input_shape=(FEATURES,), num_outputs=3, hidden=(16, 8), lut=LUTSpec(bins=8)), seed=5)
    train = checkpoint.input_mean + checkpoint.input_std * np.random.default_rng(0).normal(size=(400, FEATURES))
    input_range = InputRange.of_samples(train)
    checkpoint.info[CHECKPOINT_KEY] = input_range.to_dict()
    write_checkpoint(checkpoint, root / "runs" / "ranged")
    export_to_repository(root / "runs" / "ranged", root / "models", "ranged")
    del checkpoint.info[CHECKPOINT_KEY]
    write_checkpoint(checkpoint, root / "runs" / "older")
    export_to_repository(root / "runs" / "older", root / "models", "older")
    return root / "models", checkpoint, InputRange.from_dict(input_range.to_dict())


def card_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def client_of(repository: Path, **options: Any) -> TestClient:
    return TestClient(create_app(Settings(repository=repository, **options)))


def send(client: TestClient, model: str, x: np.ndarray) -> None:
    response = client.post(f"/v2/models/{model}/infer", content=infer_body(x))
    assert response.status_code == 200, response.text


def statistics(client: TestClient, model: str) -> dict[str, Any]:
    return client.get(f"/v2/models/{model}/stats").json()["model_stats"][0]


def metric_samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}


def test_served_counts_and_saturation_match_the_reference(served: tuple[Path, Any, InputRange]) -> None:
    """Every request's rows are checked against the card's range; with rate 1 every request runs the monitor graph, whose
    saturation equals the reference's on the rows sent."""
    repository, checkpoint, input_range = served
    rng = np.random.default_rng(1)
    batches = [(checkpoint.input_mean + checkpoint.input_std * rng.normal(0, scale, size=(7, FEATURES))).astype(np.float32) for scale in (0.5, 1, 4)]
    with client_of(repository, saturation_sample_rate=1.0) as client:
        for x in batches:
            send(client, "ranged", x)
        stats = statistics(client, "ranged")
        samples = metric_samples(client)
    every = np.concatenate(batches)
    lo, hi = input_range.lo.astype(np.float32), input_range.hi.astype(np.float32)
    outside = ((every < lo) | (every > hi)).any(axis=1)
    assert 0 < outside.sum() < len(every)
    ranged = stats["input_range"]
    assert ranged["rows"] == len(every) and ranged["out_of_range_rows"] == outside.sum()
    assert ranged["recent"]["out_of_range_fraction"] == pytest.approx(outside.mean())
    top = ranged["features"][0]
    per_feature = (every < lo).sum(axis=0) + (every > hi).sum(axis=0)
    assert top["below"] + top["above"] == per_feature.max()
    expected = np.mean([reference.saturation(checkpoint, x) for x in batches], axis=0)  # equal rows per batch: the mean is the row-weighted ratio
    ratios = [layer["ratio"] for layer in stats["lut_saturation"]["layers"]]
    np.testing.assert_allclose(ratios, expected, atol=1e-3)
    labels = (("model", "ranged"), ("version", "1"))
    assert samples["lutnet_input_out_of_range_rows_total", labels] == outside.sum()
    assert samples["lutnet_input_rows_total", labels] == len(every)
    assert samples["lutnet_input_out_of_range_ratio", labels] == pytest.approx(outside.mean())
    for layer, ratio in enumerate(expected):
        assert samples["lutnet_lut_saturation_ratio", (("layer", str(layer)), *labels)] == pytest.approx(ratio, abs=1e-3)


def test_a_model_without_a_range_serves_and_shows_no_range_metrics(served: tuple[Path, Any, InputRange]) -> None:
    repository, checkpoint, _ = served
    with client_of(repository) as client:
        send(client, "older", np.zeros((2, FEATURES), np.float32))
        stats = statistics(client, "older")
        samples = metric_samples(client)
        index = client.post("/v2/repository/index").json()
    assert stats["input_range"] is None and stats["inference_count"] == 2
    assert not any(name.startswith("lutnet_input") and dict(labels)["model"] == "older" for name, labels in samples)
    assert sorted((entry["name"], entry["version"]) for entry in index) == [("older", "1"), ("ranged", "1")]  # monitor.onnx is no version


def test_monitors_can_be_turned_off(served: tuple[Path, Any, InputRange]) -> None:
    repository, checkpoint, _ = served
    with client_of(repository, range_monitor=False, saturation_sample_rate=0) as client:
        send(client, "ranged", np.full((2, FEATURES), 1e6, np.float32))
        stats = statistics(client, "ranged")
    assert stats["input_range"] is None and stats["lut_saturation"] is None


def test_sampling_runs_the_monitor_graph_on_every_nth_request_and_warns_once(served: tuple[Path, Any, InputRange], caplog: pytest.LogCaptureFixture) -> None:
    repository, checkpoint, _ = served
    far = np.full((1, FEATURES), 1e4, np.float32)
    with caplog.at_level(logging.WARNING, logger="lutnet.serve"), client_of(repository, saturation_sample_rate=0.25, saturation_warning=0.5) as client:
        for _ in range(9):
            send(client, "ranged", far)
        stats = statistics(client, "ranged")
    assert stats["lut_saturation"]["samples"] == 2  # requests 4 and 8
    assert stats["lut_saturation"]["layers"][0]["ratio"] == 1.0
    baseline = json.loads(card_of(repository / "ranged" / "1" / "model.onnx")[metadata.SATURATION_BASELINE])
    first_layer = [r.getMessage() for r in caplog.records if "LUT layer 0 saturation" in r.getMessage()]
    above = f"{min(1.0, baseline[0] + 0.5):.3f}"
    assert len(first_layer) == 1 and f"model ranged v1: LUT layer 0 saturation 1.000 is above {above}" in first_layer[0]  # both samples: one warning


def test_the_export_records_each_layers_saturation_on_its_own_data(served: tuple[Path, Any, InputRange]) -> None:
    """The card's baseline is the monitor graph's saturation on the verification data (here synthesized from the normalization)."""
    repository, checkpoint, _ = served
    baseline = json.loads(card_of(repository / "ranged" / "1" / "model.onnx")[metadata.SATURATION_BASELINE])
    typical = probe_inputs(checkpoint, None).typical
    expected = reference.saturation(checkpoint, typical)
    assert len(baseline) == 2 and all(0.0 <= b <= 1.0 for b in baseline)
    np.testing.assert_allclose(baseline, expected, atol=1e-5)


def test_no_warning_at_the_level_the_model_was_exported_with(served: tuple[Path, Any, InputRange], caplog: pytest.LogCaptureFixture) -> None:
    """Traffic like the export data stays below baseline + margin, even where that baseline is well above zero."""
    repository, checkpoint, _ = served
    typical = probe_inputs(checkpoint, None).typical.astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="lutnet.serve"), client_of(repository, saturation_sample_rate=1.0, saturation_warning=0.05) as client:
        for start in range(0, 64, 8):
            send(client, "ranged", typical[start : start + 8])
    assert not [r for r in caplog.records if "saturation" in r.getMessage()]


def test_saturation_window_running_sums_equal_the_window_average_as_samples_leave() -> None:
    from lutnet.service.monitor import SaturationWindow

    rng = np.random.default_rng(0)
    window, other = SaturationWindow(2, 5), SaturationWindow(2, 5)
    for _ in range(40):  # many more samples than the window holds: every one enters and most leave
        window.record(int(rng.integers(1, 65)), rng.random(2))
        other.absorb({"recent": [(int(rng.integers(1, 65)), rng.random(2).tolist())]})
        for w in (window, other):
            rows = np.array([n for n, _ in w.recent], dtype=np.float64)
            expected = rows @ np.array([f for _, f in w.recent]) / rows.sum()
            np.testing.assert_allclose(w.ratios(), expected, rtol=1e-9, atol=1e-12)
    assert len(window.recent) == 5 and SaturationWindow(3, 4).ratios() is None


@pytest.mark.parametrize("rows_per_request", [[1] * 70, [1, 3, 1, 2, 5, 1, 1, 4] * 9])
def test_range_counts_give_each_request_its_own_out_of_range_rows(rows_per_request: list[int]) -> None:
    from lutnet.service.monitor import RangeCounts

    rng = np.random.default_rng(1)
    lo, hi = np.zeros(3, np.float32), np.ones(3, np.float32)
    counts = RangeCounts(3, (0.5, 99.5), None, (lo, hi))
    batches = [rng.uniform(-0.2, 1.2, size=(n, 3)).astype(np.float32) for n in rows_per_request]
    for batch in batches:
        counts.record(batch)
    expected = [(len(b), int(((b < lo) | (b > hi)).any(axis=1).sum())) for b in batches]
    assert list(counts.recent) == expected and all(type(out) is int for _, out in counts.recent)
    assert counts.rows == sum(rows_per_request) and counts.out_of_range_rows == sum(out for _, out in expected)
    everything = np.concatenate(batches)
    np.testing.assert_array_equal(counts.below, (everything < lo).sum(axis=0))
    np.testing.assert_array_equal(counts.above, (everything > hi).sum(axis=0))
