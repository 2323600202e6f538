"""onnxruntime's OneDS telemetry is off in lutnet's processes: the switch is set before onnxruntime loads."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lutnet.ortenv import TELEMETRY_SWITCH

# Records the switch at the moment onnxruntime is first imported (onnxruntime reads it when its library loads).
WATCH = """
import importlib.abc, os, sys
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime" and "seen" not in globals():
            globals()["seen"] = os.environ.get("ORT_DISABLE_TELEMETRY")
        return None
sys.meta_path.insert(0, Watch())
"""


def switch_when_onnxruntime_loads(entry: str, user_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != TELEMETRY_SWITCH}
    if user_value is not None:
        env[TELEMETRY_SWITCH] = user_value
    code = WATCH + entry + "\nassert 'onnxruntime' in sys.modules, 'onnxruntime was never imported'\nprint(seen)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


ENTRIES = {
    "import service": "import service",
    "python -m benchmarks": "import benchmarks.serve_speed",
    "lutnet serve": "from lutnet.cli import main\ntry:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass",
    "lutnet export": "from lutnet.cli import main\ntry:\n    main(['export', '--help'])\nexcept SystemExit:\n    pass\nimport lutnet.export.verify",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_telemetry_is_off_before_onnxruntime_loads(entry: str) -> None:
    assert switch_when_onnxruntime_loads(ENTRIES[entry], None) == "1"


def test_a_users_explicit_choice_is_kept() -> None:
    assert switch_when_onnxruntime_loads(ENTRIES["import service"], "0") == "0"
