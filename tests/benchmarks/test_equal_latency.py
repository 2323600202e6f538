"""The equal-latency suite's pieces: the width search on known latency curves, its direction, and the timing of exported graphs."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from benchmarks import equal_latency
from benchmarks.equal_latency import MAX_WIDTH, MIN_WIDTH, TOLERANCE, graph_latencies, match_width, nearest_one, search, session_timings, summarize
from benchmarks.peers.smoke import relu_mlp_onnx
from lutnet.training.data import load_dataset


def test_search_brackets_and_bisects_to_the_width_whose_latency_matches():
    probes = match_width(lambda width: width / 300.0, start=97)  # the ratio reaches 1 at width 300
    assert abs(probes[nearest_one(probes)] - 1.0) <= TOLERANCE / 2
    assert 97 in probes and max(probes) >= 300  # it widened from the start until the ratio passed 1


def test_search_narrows_when_the_start_is_too_slow():
    probes = match_width(lambda width: 0.9 + width / 1000.0, start=500)  # ratio 1 at width 100
    width = nearest_one(probes)
    assert abs(probes[width] - 1.0) <= TOLERANCE / 2 and width < 500


def test_search_stops_at_the_narrowest_width_when_nothing_is_fast_enough():
    probes = match_width(lambda width: 1.4 + width / 1e4, start=97)
    assert min(probes) == MIN_WIDTH and nearest_one(probes) == MIN_WIDTH and probes[MIN_WIDTH] > 1 + TOLERANCE


def test_search_stops_at_the_widest_width_when_nothing_is_slow_enough():
    probes = match_width(lambda width: 0.5, start=97)
    assert max(probes) == MAX_WIDTH


@pytest.fixture
def fake_latency(monkeypatch):
    """Graphs stand for (activation, width); a LUT layer costs ``lut_floor`` more than a Relu at any width."""
    def use(lut_floor: float):
        monkeypatch.setattr(equal_latency, "mlp_graph", lambda data, overrides, width: (overrides["activation"], width))
        cost = lambda graph: (lut_floor if graph[0] == "lut" else 0.0) + graph[1] / 100.0  # noqa: E731
        monkeypatch.setattr(equal_latency, "latency_ratio", lambda candidate, reference, x, rounds: cost(candidate) / cost(reference))
    return use


def test_the_lut_width_is_searched_when_a_narrower_lut_model_can_match_the_relu_model(fake_latency):
    fake_latency(lut_floor=0.3)
    found = search(load_dataset("wine"), rounds=1)
    assert found["searched"] == "lut_linear" and found["met"]
    assert found["widths"]["relu"] == found["budget_widths"]["relu"] and found["widths"]["lut_linear"] < found["budget_widths"]["lut_linear"]


def test_the_relu_width_is_searched_when_no_lut_width_is_fast_enough(fake_latency):
    fake_latency(lut_floor=5.0)
    found = search(load_dataset("wine"), rounds=1)
    assert found["searched"] == "relu" and found["reference"] == "lut_linear" and found["met"]
    assert found["widths"]["lut_linear"] == found["budget_widths"]["lut_linear"] and found["widths"]["relu"] > found["budget_widths"]["relu"]
    assert abs(found["matched_over_reference"] - 1.0) <= TOLERANCE
    assert all(probe["over_reference"] > 1 + TOLERANCE for probe in found["probes"]["lut_linear"])


def test_exported_graphs_are_timed_at_every_batch_with_ratios_to_relu():
    graphs = {"relu": relu_mlp_onnx(13, 8, 3).SerializeToString(), "lut_linear": relu_mlp_onnx(13, 64, 3).SerializeToString()}
    measured = graph_latencies(graphs, features=13, rounds=2)
    assert set(measured) == {f"batch_{b}" for b in equal_latency.BATCHES}
    for per in measured.values():
        assert per["relu"]["ratio_to_relu"] == 1.0 and per["lut_linear"]["median"] > 0 and per["lut_linear"]["n"] > 0


def test_each_graph_is_timed_in_several_sessions_and_summarized_by_their_median():
    graphs = {"small": relu_mlp_onnx(13, 8, 3), "large": relu_mlp_onnx(13, 512, 3)}
    x = np.zeros((1, 13), np.float32)
    measured = session_timings(graphs, x, rounds=2)
    for timing in measured.values():
        assert len(timing["session_medians"]) == equal_latency.SESSIONS
        assert timing["median"] == statistics.median(timing["session_medians"]) and timing["p10"] <= timing["p90"]


def test_summary_takes_latency_medians_over_seeds():
    def row(model, seed, accuracy, seconds, ratio):
        return {"dataset": "wine", "seed": seed, "model": model, "hidden": [4, 4], "params": 100, "test": {"accuracy": accuracy},
                "latency_s": {"batch_1": {"median": seconds, "ratio_to_relu": ratio}}}
    rows = [row("relu", s, 0.9, 1e-5, 1.0) for s in range(3)] + [row("lut_linear", s, 0.95, t, r) for s, t, r in
                                                                 ((0, 1e-5, 1.0), (1, 2e-5, 1.1), (2, 9e-5, 3.0))]
    entry = next(e for e in summarize(rows, {"wine": "classification"}) if e["model"] == "lut_linear")
    assert entry["latency_s"]["batch_1"] == {"median": 2e-5, "ratio_to_relu": 1.1}
    assert entry["mean"] == pytest.approx(0.95) and entry["minus_relu"] == pytest.approx(0.05)
