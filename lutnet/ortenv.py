"""Process settings for onnxruntime that lutnet applies before onnxruntime is first imported.

onnxruntime (1.32 here, on Linux too) carries a OneDS usage-telemetry client that, from a long-running
process such as ``lutnet serve``, starts threads that resolve and post to
``mobile.events.data.microsoft.com``. A model server should not reach out on its own, and on an
air-gapped network those lookups only fail, so lutnet turns the client off unless the user has chosen
otherwise. onnxruntime reads the switch once, when its library loads: setting it after ``import
onnxruntime`` has no effect.
"""

from __future__ import annotations

import os

TELEMETRY_SWITCH = "ORT_DISABLE_TELEMETRY"


def disable_onnxruntime_telemetry() -> None:
    """Set ``ORT_DISABLE_TELEMETRY=1`` unless it is already set (an explicit ``0`` keeps the telemetry on)."""
    os.environ.setdefault(TELEMETRY_SWITCH, "1")
