"""Suite 4: req/s and latency of ``lutnet serve`` (benchmarks.serve_speed) and of KServe and BentoML serving the same ONNX model.

Run ``python -m benchmarks.serving [--quick]``; writes ``benchmarks/results/serve_speed.json`` (lutnet serve, the bare
FastAPI ceiling and lutnet's other scenarios) and ``benchmarks/results/serving_peers.json`` (each serving peer at
concurrency 1, 8 and 64, answers checked against onnxruntime first, loaded by wrk on another core). Needs ``wrk``.
About 6 minutes on 2 cores (``--quick``: 1-second loads, one round, ~3 minutes).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks import serve_speed
from benchmarks.common import record
from benchmarks.peers.setup import ensure
from benchmarks.peers.smoke import SERVING_PEERS, serve_and_measure
from lutnet.errors import LutnetError
from lutnet.training.data import load_dataset

CONCURRENCIES = (1, 8, 64)


def served_model() -> Path:
    """The LUT digits model serve_speed exported and lutnet served, so every server answers with the same graph."""
    model = serve_speed.served_model(serve_speed.WORK / "digits" / "models")
    if not model.is_file():
        raise LutnetError("served model", expected=f"{model} (run serve_speed first)", got="no such file")
    return model


def peers(duration_s: int) -> dict[str, object]:
    """Each serving peer in its own environment on the served model, at every concurrency."""
    model = served_model()
    rows = load_dataset("digits").X_test[:8].astype("float32")
    results = []
    for serving in SERVING_PEERS:
        ensure(serving.peer)
        results.append(serve_and_measure(serving, model, rows, concurrencies=CONCURRENCIES, duration_s=duration_s))
    return {"serving_model": str(model), "concurrencies": list(CONCURRENCIES), "duration_s": duration_s,
            "notes": "one worker, onnxruntime 1 intra-op thread, per-request logging off, server and wrk on separate cores (taskset)",
            "serving": results}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-second loads, one round (a smoke run)")
    args = parser.parse_args(argv)
    status = serve_speed.main(["--duration", "1", "--repeats", "1"] if args.quick else [])
    if status != 0:
        return status
    return record("benchmarks.serving", "serving_peers", lambda: peers(1 if args.quick else 5))


if __name__ == "__main__":
    raise SystemExit(main())
