"""Drift demonstration: feed the served digits model shifted or noisy inputs and watch accuracy, out-of-range rows and saturation.

``python -m benchmarks.drift`` trains the digits model with ``lutnet train --dataset digits`` defaults (once; reused from
``benchmarks/.work/drift``), exports it to a repository and serves it with ``lutnet serve`` sampling saturation on every
request. For each drift size it sends the whole test split, modified, as v2 requests of 30 rows and reads the model's
statistics: accuracy from the answers, the out-of-range fraction from the counters, each LUT layer's saturation
from the window of that size's samples. Two drifts: a brightness shift (every pixel + d, pixel values are 0..16) and
Gaussian noise of standard deviation d. Writes ``benchmarks/results/drift.json`` and ``drift.png``. About 2 minutes.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks.common import RESULTS_DIR, write_results
from lutnet import cli, tensorfile
from lutnet.checkpoint import CONFIG_FILE, TEST_SPLIT_FILE
from tests.service.server import Server

WORK = Path(__file__).resolve().parent / ".work" / "drift"
ROWS_PER_REQUEST = 30
SIZES = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
DRIFTS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "brightness shift (+d on every pixel)": lambda x, d, rng: x + d,
    "Gaussian noise (std d)": lambda x, d, rng: x + rng.normal(0.0, d, size=x.shape) if d else x,
}


def trained_repository() -> Path:
    """The digits model (``lutnet train`` defaults) exported to ``WORK/models``; trained once."""
    run = WORK / "run"
    if not (run / CONFIG_FILE).is_file():
        assert cli.main(["train", "--dataset", "digits", "--out", str(run)]) == 0
    if not (WORK / "models" / "digits").is_dir():
        assert cli.main(["export", str(run), "--repository", str(WORK / "models"), "--name", "digits"]) == 0
    return WORK / "models"


def statistics(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/v2/models/digits/stats", timeout=30).json()["model_stats"][0]


def measure(url: str, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy, out-of-range fraction and per-layer saturation of the answers to ``x``, sent as requests of ``ROWS_PER_REQUEST`` rows."""
    before = statistics(url)["input_range"]
    correct = 0
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(x), ROWS_PER_REQUEST):
            rows = x[start : start + ROWS_PER_REQUEST].astype(np.float32)
            body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.reshape(-1).tolist()}]}
            answer = client.post(f"{url}/v2/models/digits/infer", content=orjson.dumps(body))
            answer.raise_for_status()
            logits = np.asarray(answer.json()["outputs"][0]["data"]).reshape(len(rows), -1)
            correct += int((logits.argmax(axis=1) == y[start : start + ROWS_PER_REQUEST]).sum())
    after = statistics(url)
    rows = after["input_range"]["rows"] - before["rows"]
    return {
        "accuracy": correct / len(x),
        "out_of_range_fraction": (after["input_range"]["out_of_range_rows"] - before["out_of_range_rows"]) / rows,
        "saturation": [layer["ratio"] for layer in after["lut_saturation"]["layers"]],
    }


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), sharey=True)
    for ax, (drift, points) in zip(axes, results.items(), strict=True):
        sizes = [p["size"] for p in points]
        ax.plot(sizes, [p["accuracy"] for p in points], "k-o", label="accuracy")
        ax.plot(sizes, [p["out_of_range_fraction"] for p in points], "-s", label="rows out of training range")
        for layer in range(len(points[0]["saturation"])):
            ax.plot(sizes, [p["saturation"][layer] for p in points], "--^", label=f"saturation, LUT layer {layer}")
        ax.set_title(drift)
        ax.set_xlabel("drift size d (pixel units)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction")
    axes[0].legend(loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    repository = trained_repository()
    split = tensorfile.load_file(WORK / "run" / TEST_SPLIT_FILE)
    x, y = split["X"].astype(np.float64), split["y"]
    window = math.ceil(len(x) / ROWS_PER_REQUEST)  # the saturation window holds exactly one drift size's samples
    flags = ["--saturation-sample-rate", "1", "--saturation-window", str(window), "--saturation-warning", "1", "--log-level", "warning"]
    server = Server(repository, *flags, log=WORK / "server.log")
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for drift, change in DRIFTS.items():
            rng = np.random.default_rng(0)
            results[drift] = [{"size": size, **measure(server.url, change(x, size, rng), y)} for size in SIZES]
            for point in results[drift]:
                print(f"{drift:38s} d={point['size']:4.2f} accuracy {point['accuracy']:.3f}  out of range {point['out_of_range_fraction']:.3f}"
                      f"  saturation {', '.join(f'{s:.3f}' for s in point['saturation'])}")
    finally:
        server.stop()
    plot(results, RESULTS_DIR / "drift.png")
    path = write_results("drift", {"setup": {"model": "lutnet train --dataset digits defaults", "rows": len(x), "sizes": SIZES}, "drifts": results})
    print(f"wrote {path} and {RESULTS_DIR / 'drift.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
