"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright against a real ``lutnet serve``.

Needs the ``chromium`` binary (``.ci/install-browser.sh`` installs it; ``LUTNET_CHROMIUM`` names another); skipped with
the reason printed where it is absent. The screenshot is saved under the printed artifacts folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lutnet import cli, metadata, tensorfile
from lutnet.checkpoint import TEST_SPLIT_FILE, read_checkpoint
from lutnet.lut import lut_forward
from lutnet.ranges import input_range_from_json
from lutnet.service.dashboard import sampled_channels
from tests.service.server import Server

pytestmark = pytest.mark.slow
CHROMIUM = os.environ.get("LUTNET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 20_000  # the page refreshes every 2 s; an update that never shows fails the wait


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, np.ndarray]]:
    """A small digits model trained, exported and served with every request sampled for saturation."""
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (install it with .ci/install-browser.sh, or set LUTNET_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra has it)")
    root = tmp_path_factory.mktemp("browser")
    fast = ["--hidden", "32,32", "--lr", "1e-2", "--table-lr", "1e-2", "--threads", "1", "--quiet", "--epochs", "2"]
    assert cli.main(["train", "--dataset", "digits", "--out", str(root / "run"), *fast]) == 0
    assert cli.main(["export", str(root / "run"), "--repository", str(root / "models"), "--name", "digits"]) == 0
    server = Server(root / "models", "--saturation-sample-rate", "1", log=root / "server.log")
    yield server, read_checkpoint(root / "run"), tensorfile.load_file(root / "run" / TEST_SPLIT_FILE)["X"]
    server.stop()


def predict(server: Server, rows: np.ndarray) -> None:
    for row in rows:
        response = httpx.post(f"{server.url}/v1/models/digits:predict", json={"instances": [row.tolist()]}, timeout=10)
        assert response.status_code == 200, response.text


def out_of_range(server: Server, rows: np.ndarray) -> int:
    card = httpx.get(f"{server.url}/v2/models/digits/config", timeout=10).json()["lutnet_model_card"]
    input_range = input_range_from_json(json.dumps(card[metadata.INPUT_RANGE.removeprefix(metadata.PREFIX)]), rows.shape[1])
    lo, hi = input_range.lo.astype(np.float32), input_range.hi.astype(np.float32)
    return int(((rows < lo) | (rows > hi)).any(axis=1).sum())


def field(page: Any, name: str) -> str:
    return page.inner_text(f'section[data-model="digits"] [data-field="{name}"]')


def wait_for_field(page: Any, name: str, value: str) -> None:
    page.wait_for_function(
        "([name, value]) => document.querySelector(`section[data-model=digits] [data-field=${name}]`)?.textContent === value",
        arg=[name, value],
        timeout=WAIT_MS,
    )


def test_dashboard_shows_live_counts_and_the_learned_curves(digits: tuple[Server, Any, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> None:
    from playwright.sync_api import sync_playwright

    server, checkpoint, test_rows = digits
    first = np.concatenate([test_rows[:6], test_rows[6:9] + 40.0]).astype(np.float32)  # three rows far out of range
    second = np.concatenate([test_rows[9:13], test_rows[13:15] * -5.0]).astype(np.float32)
    predict(server, first)
    artifacts = Path(os.environ.get("LUTNET_TEST_ARTIFACTS") or tmp_path_factory.getbasetemp() / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{server.url}/dashboard")
            wait_for_field(page, "requests", str(len(first)))
            assert field(page, "out-of-range") == str(out_of_range(server, first)) != "0"
            assert all(float(field(page, q)) > 0 for q in ("p50", "p95", "p99"))
            assert "READY" in field(page, "versions")

            predict(server, second)
            wait_for_field(page, "requests", str(len(first) + len(second)))
            wait_for_field(page, "out-of-range", str(out_of_range(server, first) + out_of_range(server, second)))
            assert float(field(page, "saturation-0").split()[0]) > 0

            plots = page.query_selector_all('section[data-model="digits"] svg[data-layer]')
            assert len(plots) == len(checkpoint.spec.hidden)
            for plot in plots:
                layer = int(plot.get_attribute("data-layer"))
                table, lo, hi = (checkpoint.tensors[f"act.{layer}.{k}"] for k in ("table", "lo", "hi"))
                lines = plot.query_selector_all("polyline")
                assert [int(line.get_attribute("data-channel")) for line in lines] == sampled_channels(len(lo))
                for line in lines:
                    c = int(line.get_attribute("data-channel"))
                    x, y = (np.array(json.loads(line.get_attribute(f"data-{axis}"))) for axis in ("x", "y"))
                    expected = lut_forward(x[None, :], table[c : c + 1], lo[c : c + 1], hi[c : c + 1], "linear", checkpoint.spec.lut.extrapolate, 0)[0]
                    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
                    assert len(line.get_attribute("points").split()) == len(x)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no horizontal scrolling on a laptop
            page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
            print(f"dashboard screenshot: {artifacts / 'dashboard.png'}")
        finally:
            browser.close()
    assert errors == []
