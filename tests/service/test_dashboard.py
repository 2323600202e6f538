"""The dashboard page, its curve route against the numpy reference, and /docs served without any CDN."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lutnet.checkpoint import write_checkpoint
from lutnet.lut import lut_forward
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.exporter import export_to_repository
from lutnet.service.app import create_app
from lutnet.service.dashboard import CURVE_CHANNELS, sampled_channels
from lutnet.service.settings import Settings
from tests.export.checkpoints import random_checkpoint
from tests.service.conftest import TestClient

# Anything a browser would fetch from elsewhere: a remote src/href, a CSS url() or @import, a remote fetch.
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(|@import|fetch\(\s*["'`]https?:""", re.IGNORECASE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("dashboard")
    checkpoint = random_checkpoint(ModelSpec(family="mlp", input_shape=(5,), num_outputs=2, hidden=(20, 3), lut=LUTSpec(bins=6, mode="nearest")), seed=8)
    write_checkpoint(checkpoint, root / "run")
    export_to_repository(root / "run", root / "models", "tiny")
    return root / "models", checkpoint


def test_sampled_channels_spread_over_the_layer() -> None:
    assert sampled_channels(20) == [0, 3, 5, 8, 11, 14, 16, 19] and sampled_channels(3) == [0, 1, 2] and sampled_channels(1) == [0]


def test_curves_are_the_served_tables(exported: tuple[Path, Any]) -> None:
    """Every sampled channel's curve is the checkpoint's table through the reference lookup, in its mode, past both edges."""
    repository, checkpoint = exported
    with TestClient(create_app(Settings(repository=repository))) as client:
        response = client.get("/dashboard/models/tiny/activations")
        assert client.get("/dashboard/models/tiny/versions/1/activations").json() == response.json()
        missing = client.get("/dashboard/models/nope/activations")
    assert response.status_code == 200 and missing.status_code == 404 and "error" in missing.json()
    data = response.json()
    assert (data["mode"], data["extrapolate"]) == ("nearest", "linear")
    assert [len(layer["curves"]) for layer in data["layers"]] == [CURVE_CHANNELS, 3]
    for i, layer in enumerate(data["layers"]):
        table, lo, hi = (checkpoint.tensors[f"act.{i}.{k}"] for k in ("table", "lo", "hi"))
        for curve in layer["curves"]:
            c = curve["channel"]
            x, edges = np.array(curve["x"]), (np.array([curve["lo"]]), np.array([curve["hi"]]))  # the card's lo, hi: float32 of the checkpoint's
            expected = lut_forward(x[None, :], table[c : c + 1], *edges, "nearest", "linear", channel_axis=0)[0]
            np.testing.assert_allclose(curve["y"], expected, rtol=1e-6, atol=1e-6)
            assert x.min() < lo[c] and x.max() > hi[c] and np.float32(curve["lo"]) == lo[c] and np.float32(curve["hi"]) == hi[c]


def test_dashboard_is_one_self_contained_page_and_can_be_turned_off(exported: tuple[Path, Any]) -> None:
    repository, _ = exported
    with TestClient(create_app(Settings(repository=repository))) as client:
        page = client.get("/dashboard")
        documented = client.get("/openapi.json").json()["paths"]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert REMOTE.search(page.text) is None and "<script src" not in page.text
    assert all(href.startswith("data:") for href in re.findall(r"<link[^>]*href=\"([^\"]*)\"", page.text))  # the icon is inline too
    assert "/dashboard/models/{model_name}/activations" in documented and "/dashboard" in documented
    with TestClient(create_app(Settings(repository=repository, dashboard=False))) as client:
        assert client.get("/dashboard").status_code == 404
        assert client.get("/dashboard/models/tiny/activations").status_code == 404


def test_docs_load_their_assets_from_the_server(exported: tuple[Path, Any]) -> None:
    """/docs and /redoc reference only this server's files, and those files are served."""
    repository, _ = exported
    with TestClient(create_app(Settings(repository=repository))) as client:
        for route in ("/docs", "/redoc"):
            html = client.get(route).text
            assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
            assert assets and all(asset.startswith("/docs-assets/") for asset in assets), assets
            assert "fonts.googleapis" not in html and "cdn." not in html
            for asset in assets:
                response = client.get(asset)
                assert response.status_code == 200 and len(response.content) > 1000
