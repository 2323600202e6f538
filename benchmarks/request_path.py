"""Per-request costs on the service's hot path, each measured in-process, interleaved round by round.

Run ``python -m benchmarks.request_path``; writes ``benchmarks/results/request_path.json``. About a minute.

- onnxruntime's public ``InferenceSession.run``, which the service calls, against its private binding call
  ``session._sess.run`` (no Python-side checks of the feeds), batch 1 on the digits-shaped model, 1 thread;
- the service's one v2 request decoder on the two common requests: batch-1 JSON and batch-256 binary;
- what the input range monitor adds to a batch-1 request (keeping its batch, and its share of the vectorized check
  over the kept batches), and what a sampled saturation run adds, spread over the requests of one sampling period.

Set beside the server's CPU time per request (``benchmarks.serve_speed``), these give each part's share of a request.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from benchmarks.common import record, summarize, time_call
from benchmarks.export_speed import session, synthetic_checkpoint
from lutnet.export.graph import build_graph
from lutnet.export.monitor import lookup_coordinates, monitor_graph
from lutnet.ranges import InputRange
from lutnet.service.monitor import InputMonitor, RangeCounts, SaturationWindow
from lutnet.service.protocol import TensorSpec, decode_infer_request
from lutnet.service.settings import Settings
from lutnet.spec import LUTSpec, ModelSpec

SPEC = ModelSpec("mlp", (64,), 10, hidden=(256, 256), lut=LUTSpec(bins=16))  # lutnet train --dataset digits defaults
CALLS = 2000


def onnxruntime_calls() -> dict[str, Callable[[], object]]:
    s = session(build_graph(synthetic_checkpoint(SPEC)), threads=1)
    feeds, names = {"input": np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32)}, ["output"]
    return {"public session.run, batch 1": lambda: s.run(names, feeds), "private session._sess.run, batch 1": lambda: s._sess.run(names, feeds, None)}


def decoder_calls() -> dict[str, Callable[[], object]]:
    specs = [TensorSpec("input", "FP32", (-1, 64))], [TensorSpec("output", "FP32", (-1, 10))]
    rng = np.random.default_rng(0)
    row = rng.random(64).round(4).tolist()
    json_body = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": row}]})
    batch = rng.random((256, 64), dtype=np.float32)
    header = orjson.dumps({"inputs": [{"name": "input", "shape": [256, 64], "datatype": "FP32", "parameters": {"binary_data_size": batch.nbytes}}],
                           "parameters": {"binary_data_output": True}})
    binary_body, header_length = header + batch.tobytes(), str(len(header))
    return {
        "decode JSON, batch 1": lambda: decode_infer_request(json_body, None, *specs, max_batch_size=1024, allow_nonfinite=False),
        "decode binary, batch 256": lambda: decode_infer_request(binary_body, header_length, *specs, max_batch_size=1024, allow_nonfinite=False),
    }


def monitor_calls() -> dict[str, Callable[[], object]]:
    """The monitor's work for one batch-1 request, with the service's default settings."""
    rng = np.random.default_rng(0)
    x = {"input": rng.normal(size=(1, 64)).astype(np.float32)}
    bounds = InputRange.of_samples(rng.normal(size=(512, 64)))
    counts = RangeCounts(64, bounds.percentiles, Settings().stats_window, (bounds.lo.astype(np.float32), bounds.hi.astype(np.float32)))
    ranged = InputMonitor("input", counts, None, "benchmark", [])
    proto = build_graph(synthetic_checkpoint(SPEC))
    monitor = session(monitor_graph(proto, lookup_coordinates(proto, SPEC.lut.mode, SPEC.lut.extrapolate, SPEC.lut.bins)), threads=1)
    every = round(1 / Settings().saturation_sample_rate)
    window = SaturationWindow(len(SPEC.hidden), Settings().saturation_window)
    run = lambda feeds: monitor.run(["lut_saturation"], feeds)[0]  # noqa: E731
    sampled = InputMonitor("input", None, (run, window, every), "benchmark", [1.0] * len(SPEC.hidden))
    return {"range monitor, batch 1 (amortized)": lambda: ranged.observe(x, 1),
            f"saturation sampling, batch 1 (one run per {every} requests, amortized)": lambda: sampled.observe(x, 1)}


def measure(rounds: int) -> dict[str, Any]:
    runners = {**onnxruntime_calls(), **decoder_calls(), **monitor_calls()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            samples[name] += [t / CALLS for t in time_call(lambda run=run: [run() for _ in range(CALLS)], repeats=3)]
    timings = {name: summarize(values) for name, values in samples.items()}
    public, private = (timings[f"{kind} batch 1"]["median"] for kind in ("public session.run,", "private session._sess.run,"))
    return {"settings": {"model": "mlp 64-256-256-10, 16-bin linear LUTs", "threads": 1, "calls_per_sample": CALLS, "rounds": rounds},
            "timings_s": timings, "public_over_private_run": public / private}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.request_path", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    return record(p.prog, "request_path", lambda: measure(args.rounds))


if __name__ == "__main__":
    raise SystemExit(main())
