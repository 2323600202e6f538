"""The read-only dashboard: one self-contained HTML page, and the learned activation curves it draws from the served model's card.

The page loads nothing from elsewhere (no CDN, no web fonts) and reads only routes the server already
has: the statistics routes every few seconds, the repository index, and ``activation_curves``. The
curves come from the knots the exporter stores in the model card (``lutnet.metadata.LUT_TABLES``), the
tables the served graph was built from, evaluated by the numpy reference (``lutnet.lut``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from lutnet import metadata
from lutnet.errors import LutnetError
from lutnet.lut import knot_positions, lut_forward
from lutnet.ranges import LayerTable
from lutnet.service.errors import ModelLoadError
from lutnet.service.runtime import LoadedModel

CURVE_CHANNELS = 8  # channels drawn per layer, evenly spread over the layer
CURVE_MARGIN = 0.25  # share of a channel's range drawn past each edge, where the table extrapolates
CURVE_SAMPLES_PER_BIN = 4


@cache
def page() -> bytes:
    """The dashboard's HTML, CSS and script in one file, from the installed package."""
    return resources.files("lutnet.service").joinpath("dashboard.html").read_bytes()


def sampled_channels(channels: int, most: int = CURVE_CHANNELS) -> list[int]:
    """Up to ``most`` channel indices evenly spread from the first to the last."""
    return sorted({int(c) for c in np.linspace(0, channels - 1, min(channels, most)).round()})


def activation_curves(model: LoadedModel) -> dict[str, Any]:
    """Per LUT layer, the curves of a sample of channels: x over each channel's range and margins, y = the table's activation."""
    values = model.card.values
    mode, extrapolate = values.get(metadata.LUT_MODE, "linear"), values.get(metadata.LUT_EXTRAPOLATE, "clamp")
    try:
        tables = [LayerTable.from_dict(item, f"LUT table of layer {i}") for i, item in enumerate(values.get(metadata.LUT_TABLES) or [])]
    except LutnetError as exc:
        raise ModelLoadError(f"model {model.name} v{model.version} card", expected="readable LUT tables", got=str(exc)) from None
    return {
        "name": model.name,
        "version": str(model.version),
        "mode": mode,
        "extrapolate": extrapolate,
        "layers": [_layer_curves(i, table, mode, extrapolate) for i, table in enumerate(tables)],
    }


def _layer_curves(layer: int, table: LayerTable, mode: str, extrapolate: str) -> dict[str, Any]:
    bins = table.knots.shape[1] - 1
    curves = []
    for channel in sampled_channels(len(table.lo)):
        knots, lo, hi = table.knots[channel : channel + 1], table.lo[channel : channel + 1], table.hi[channel : channel + 1]
        margin = CURVE_MARGIN * (hi[0] - lo[0])
        # The knots themselves make a linear table's polyline exact; the even grid shows nearest pockets and the extrapolation.
        x = np.unique(np.concatenate([knot_positions(lo, hi, bins)[0], np.linspace(lo[0] - margin, hi[0] + margin, CURVE_SAMPLES_PER_BIN * bins + 1)]))
        y = lut_forward(x[None, :], knots, lo, hi, mode, extrapolate, channel_axis=0)[0]
        curves.append({"channel": channel, "lo": float(lo[0]), "hi": float(hi[0]), "x": x.tolist(), "y": y.tolist()})
    return {"layer": layer, "channels": len(table.lo), "bins": bins, "curves": curves}
