"""Cost of the input range and saturation monitors in ``lutnet serve``, measured in one run with ``wrk``.

``python -m benchmarks.monitor_cost [--duration 2] [--repeats 7]`` exports the digits model's shape with
``lutnet train``'s defaults and a training range in its card (random weights: speed does not depend on their
values), starts three servers on one core: monitors off (``--no-range-monitor --saturation-sample-rate 0``),
range monitoring alone (``--saturation-sample-rate 0``), and the defaults (range monitoring and saturation sampled
at the default rate), plus a second monitors-off server as a control: the difference between two identical
servers is the resolution of the requests/s comparison. ``wrk`` on another core sends v2 JSON batch-1 requests at
concurrency 1 and 64, rounds interleaved.

Then, with ``py-spy`` (the ``dev`` extra), the defaults server is profiled under the same load: the share of its
CPU samples inside ``lutnet/service/monitor.py`` (range check and saturation sampling apart) is the monitors' cost measured inside one process, free of the
differences between processes that the control shows. Writes ``benchmarks/results/monitor_cost.json`` (medians,
every run, the control, the profile, targets). About 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results
from benchmarks.serve_speed import INFER, Scenario, bodies, cores, interleaved_rounds, medians, py_spy, running_servers, sampled_stacks
from lutnet.checkpoint import write_checkpoint
from lutnet.ranges import CHECKPOINT_KEY, InputRange
from lutnet.service.settings import Settings
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.exporter import export_to_repository
from tests.export.checkpoints import random_checkpoint

WORK = Path(__file__).resolve().parent / ".work" / "monitor_cost"
SERVERS = {
    "off": ["--no-range-monitor", "--saturation-sample-rate", "0"],
    "range": ["--saturation-sample-rate", "0"],
    "defaults": [],
    "off_again": ["--no-range-monitor", "--saturation-sample-rate", "0"],  # the control: identical to "off"
}
SCENARIOS = [Scenario(f"{server}_c{c}", server, INFER, "json_b1", c) for c in (1, 64) for server in SERVERS]
TARGET_COST = 0.03  # requests/s lost to monitoring, at most


def export_ranged_digits(root: Path) -> Path:
    """The digits model's shape with an input range of pixel values 0..16 in its card, and its monitor graph."""
    spec = ModelSpec(family="mlp", input_shape=(64,), num_outputs=10, hidden=(256, 256), lut=LUTSpec())
    checkpoint = random_checkpoint(spec, seed=0)
    checkpoint.info[CHECKPOINT_KEY] = InputRange.of_samples(np.random.default_rng(0).integers(0, 17, size=(1000, 64))).to_dict()
    shutil.rmtree(root, ignore_errors=True)
    write_checkpoint(checkpoint, root / "digits")
    export_to_repository(root / "digits", root / "models", "digits")
    return root / "models"


def derived(summary: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Cost = 1 - requests/s with a monitor / requests/s without it, per concurrency."""
    rps = {name: values["requests_per_second"] for name, values in summary.items()}
    costs = {}
    for c in (1, 64):
        costs[f"range_cost_c{c}"] = 1 - rps[f"range_c{c}"] / rps[f"off_c{c}"]
        costs[f"saturation_cost_c{c}"] = 1 - rps[f"defaults_c{c}"] / rps[f"range_c{c}"]
        costs[f"total_cost_c{c}"] = 1 - rps[f"defaults_c{c}"] / rps[f"off_c{c}"]
        costs[f"control_difference_c{c}"] = 1 - rps[f"off_again_c{c}"] / rps[f"off_c{c}"]
    met = {name: value <= TARGET_COST for name, value in costs.items() if not name.startswith(("total", "control"))}
    return {"comparisons": costs, "target_cost": TARGET_COST, "targets_met": met}


MONITOR_SOURCE = "service/monitor.py"
SAMPLE_FRAME = "_sample ("  # InputMonitor._sample: one run of the monitor graph


def profile_shares(server: tuple[int, int], client_pin: list[str], files: dict[str, tuple[Path, dict[str, str]]], seconds: int) -> dict[str, Any]:
    """Per concurrency, the share of the server's CPU samples (py-spy, 500 Hz, idle excluded) in the range check and in the
    saturation sampling (stacks through the monitors' module, split by whether they pass through ``_sample``)."""
    shares: dict[str, Any] = {}
    for concurrency in (1, 64):
        scenario = Scenario(f"profile_c{concurrency}", "defaults", INFER, "json_b1", concurrency)
        total, inside = 0, {"range": 0, "saturation": 0}
        for stack, count in sampled_stacks(server, client_pin, scenario, *files["json_b1"], seconds):
            total += count
            if MONITOR_SOURCE in stack:  # the sampled monitor-graph runs sit under _sample; the rest is the range check
                inside["saturation" if SAMPLE_FRAME in stack else "range"] += count
        shares[f"c{concurrency}"] = {"samples": total, **{f"{part}_samples": n for part, n in inside.items()},
                                     **{f"{part}_share": n / total if total else None for part, n in inside.items()}}
    shares["target_met"] = {f"{part}_c{c}": shares[f"c{c}"][f"{part}_share"] is not None and shares[f"c{c}"][f"{part}_share"] <= TARGET_COST
                            for c in (1, 64) for part in ("range", "saturation")}
    return shares


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitor_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=2, help="seconds of load per run (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds over every scenario; medians are reported (default 7)")
    parser.add_argument("--quick", action="store_true", help="smoke-sized run: 1 s runs, 2 rounds")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the defaults server")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeats = 1, 2
    if shutil.which("wrk") is None:
        print("benchmarks.monitor_cost: error: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    repository = export_ranged_digits(WORK / "digits")
    files = bodies(WORK)
    server_pin, client_pin = cores()
    load_before = os.getloadavg()
    profile = None
    with running_servers(repository, server_pin, SERVERS, WORK) as servers:
        runs = interleaved_rounds(servers, SCENARIOS, files, client_pin, 1, args.duration, args.repeats, "monitor_cost")
        if py_spy() and not args.no_profile:
            profile = profile_shares(servers["defaults"], client_pin, files, 4 * args.duration)
    summary = {name: medians(values) for name, values in runs.items()}
    result = {
        "setup": {
            "model": "the digits model's shape and lutnet train defaults (MLP 64-256-256-10, 16-bin linear LUTs), input range 0..16 in its card",
            "servers": SERVERS,
            "saturation_sample_rate_default": Settings.model_fields["saturation_sample_rate"].default,
            "scenarios": [asdict(s) for s in SCENARIOS],
            "server_pin": server_pin,
            "client_pin": client_pin,
            "duration_s": args.duration,
            "repeats": args.repeats,
            "load_average_before_after": [load_before, os.getloadavg()],
        },
        "medians": summary,
        **derived(summary),
        "profile": profile,
        "runs": runs,
    }
    path = write_results("monitor_cost", result)
    for name, values in summary.items():
        print(f"{name:14s} {values['requests_per_second']:7.0f} req/s  p99 {values['p99_ms']:7.3f} ms  errors {values['errors']}")
    print(json.dumps(derived(summary), indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
