"""``lutnet serve --workers 2``: every scrape and statistics answer covers both worker processes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lutnet.checkpoint import write_checkpoint
from lutnet.ranges import CHECKPOINT_KEY, InputRange
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.exporter import export_to_repository
from tests.export.checkpoints import random_checkpoint
from tests.service.server import Server

pytestmark = pytest.mark.slow
REQUESTS = 80
SETTLE_S = 15  # counts published every PUBLISH_S; a sum that never reaches the total fails here


def counts(url: str) -> tuple[float, int, int]:
    """Successful requests in /metrics, and inferred rows and range-checked rows in the statistics route (one worker answers each)."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)
    success = sum(s.value for f in families for s in f.samples if s.name == "lutnet_requests_total" and s.labels["outcome"] == "success")
    stats = httpx.get(f"{url}/v2/models/m/stats", timeout=10).json()["model_stats"][0]
    return success, stats["inference_count"], stats["input_range"]["rows"]


def test_two_workers_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = random_checkpoint(ModelSpec(family="mlp", input_shape=(4,), num_outputs=2, hidden=(8,), lut=LUTSpec(bins=4)), seed=3)
    checkpoint.info[CHECKPOINT_KEY] = InputRange.of_samples(np.random.default_rng(0).normal(size=(100, 4))).to_dict()
    write_checkpoint(checkpoint, tmp_path / "run")
    export_to_repository(tmp_path / "run", tmp_path / "models", "m")
    monkeypatch.setenv("LUTNET_METRICS_DIR", str(tmp_path / "metrics"))  # set here only to look inside; lutnet serve makes one itself
    (tmp_path / "metrics").mkdir()
    server = Server(tmp_path / "models", "--workers", "2", log=tmp_path / "server.log")
    try:

        def one(i: int) -> int:
            with httpx.Client() as client:  # a new connection per request, so the kernel spreads them over both workers
                return client.post(f"{server.url}/v1/models/m:predict", json={"instances": [[float(i % 7)] * 4]}, timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, range(REQUESTS))) == {200}
        expected, deadline = [(REQUESTS, REQUESTS, REQUESTS)] * 6, time.monotonic() + SETTLE_S
        scrapes = [counts(server.url) for _ in range(6)]  # several, so both workers answer some: each adds the other's published counts
        while scrapes != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            scrapes = [counts(server.url) for _ in range(6)]
        assert scrapes == expected
        published = [orjson.loads(path.read_bytes()) for path in (tmp_path / "metrics").glob("*.json")]
        per_worker = [sum(stats["inference_count"] for stats in worker) for worker in published]
        assert len(per_worker) == 2 and min(per_worker) > 0 and sum(per_worker) == REQUESTS  # both served: no single worker's count is the total
    finally:
        assert server.stop()
