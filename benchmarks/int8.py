"""int8 lookup-table graphs against float ReLU and onnxruntime's own int8 ReLU: latency, accuracy and file size in one run.

Run ``python -m benchmarks.int8 [--quick]``; writes ``benchmarks/results/int8.json``. Two reference models on digits
(seed 0, ``lutnet train`` defaults otherwise): the MLP 64-256-256-10 and the convnet. Each is trained with LUT
activations and with ReLU, then exported five ways:

- ``float_relu``: ``lutnet export`` of the ReLU model;
- ``float_lut``: ``lutnet export`` of the LUT model;
- ``int8_lut``: ``lutnet export --quantize int8`` of the LUT model;
- ``int8_relu``: ``lutnet export --quantize int8`` of the ReLU model (ReLU as a table);
- ``ort_int8_relu``: ``onnxruntime.quantization.quantize_static`` of ``float_relu`` (per-channel int8 weights, uint8
  activations, QDQ), calibrated on the same training sample.

``--accuracy`` instead measures what post-training quantization costs on each benchmark data set: one LUT MLP
(``lutnet train`` defaults) per set and seed, its float and int8 exports scored on the test split
(``int8_accuracy.json``; bounds: at most 0.5 accuracy points lost, at most 5% RMSE added).

onnxruntime CPU with 1 thread; the five are timed in interleaved rounds at each batch size. ``median_us`` is
each variant's median over all rounds; a ratio is the median of the per-round ratios of medians, each round's
variants timed within moments of each other, which slow drift on a shared machine cannot tilt. Targets:
``int8_lut`` at most 1.0x ``float_relu`` at batch 32 and 1024 and 1.3x at batch 1, and at most 1.0x
``ort_int8_relu`` at batch 32 and 1024. Accuracy is each exported file's on the test split. ``kernels_us`` is
onnxruntime's profile of three variants (time per operator type, after its graph optimizations): where the time goes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.common import paired_rounds, record
from lutnet import tensorfile
from lutnet.checkpoint import CALIBRATION_FILE, TEST_SPLIT_FILE
from lutnet.export.exporter import export_model

BATCHES = (1, 32, 1024)
TARGETS = {"vs_float_relu": {1: 1.3, 32: 1.0, 1024: 1.0}, "vs_ort_int8_relu": {32: 1.0, 1024: 1.0}}
MODELS = {"mlp": {"model": "mlp"}, "convnet": {"model": "convnet"}}
ROUNDS, ROUNDS_QUICK = 15, 3
VARIANTS = ("float_relu", "float_lut", "int8_lut", "int8_relu", "ort_int8_relu")


def train_run(out: Path, family: str, activation: str, quick: bool) -> Path:
    from lutnet.training.trainer import TrainConfig, train

    epochs = {"epochs": 3} if quick else {}
    train(TrainConfig(out=str(out), dataset="digits", model=family, activation=activation, seed=0, threads=1, quiet=True, **epochs))
    return out


def ort_quantized(float_model: bytes, calibration: np.ndarray, work: Path) -> bytes:
    """onnxruntime's static int8 quantization of a float model, calibrated on ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": calibration[i : i + 64]} for i in range(0, len(calibration), 64)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    source, target = work / "float_relu.onnx", work / "ort_int8_relu.onnx"
    source.write_bytes(float_model)
    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return target.read_bytes()


def session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def kernel_profile(model: bytes, x: np.ndarray, runs: int) -> dict[str, float]:
    """Median microseconds per run spent in each operator type (onnxruntime's profiler; kernels only, as optimized)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="lutnet-profile-") as folder:
        options.profile_file_prefix = str(Path(folder, "profile"))
        s = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            s.run(None, {"input": x})
        events = json.loads(Path(s.end_profiling()).read_text())
    per_node: dict[str, list[float]] = {}
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node.setdefault(event["name"], []).append(event["dur"])
            op_of[event["name"]] = event["args"]["op_name"]
    totals: dict[str, float] = {}
    for node, durations in per_node.items():
        totals[op_of[node]] = totals.get(op_of[node], 0.0) + statistics.median(durations)
    return {op: round(us, 1) for op, us in sorted(totals.items(), key=lambda item: -item[1])}


def accuracy(s: ort.InferenceSession, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(s.run(None, {"input": x})[0].argmax(axis=1) == y))


def measure_family(family: str, quick: bool, work: Path) -> dict[str, Any]:
    lut = train_run(work / f"{family}_lut", family, "lut", quick)
    relu = train_run(work / f"{family}_relu", family, "relu", quick)
    calibration = tensorfile.load_file(lut / CALIBRATION_FILE)["X"]
    split = tensorfile.load_file(lut / TEST_SPLIT_FILE)
    x, y = split["X"].astype(np.float32), split["y"]
    bound = {"max_accuracy_drop": 1.0} if quick else {}  # a 3-epoch model is a plumbing check, not an accuracy claim
    exports = {
        "float_relu": export_model(relu), "float_lut": export_model(lut),
        "int8_lut": export_model(lut, quantize="int8", **bound), "int8_relu": export_model(relu, quantize="int8", **bound),
    }
    models = {name: result.model for name, result in exports.items()}
    models["ort_int8_relu"] = ort_quantized(models["float_relu"], calibration, work)
    sessions = {name: session(models[name]) for name in VARIANTS}
    result: dict[str, Any] = {
        "accuracy": {name: accuracy(s, x, y) for name, s in sessions.items()},
        "file_kib": {name: round(len(models[name]) / 1024, 1) for name in VARIANTS},
        "nodes": {name: len(onnx.load_from_string(models[name]).graph.node) for name in VARIANTS},
        "test_rows": len(x),
    }
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        feeds = {"input": np.ascontiguousarray(x[rng.integers(0, len(x), batch)])}
        cost = 1 if batch == 1 else batch // 32 + 1
        repeats = max(3, (30 if quick else 100) // cost)
        calls = {name: (lambda s=s, feeds=feeds: s.run(None, feeds)) for name, s in sessions.items()}
        timed = paired_rounds(calls, rounds=ROUNDS_QUICK if quick else ROUNDS, repeats=repeats)
        entry: dict[str, Any] = {"median_us": {name: round(timed.median(name) * 1e6, 2) for name in VARIANTS}, "rounds": len(timed.rounds)}
        for ratio, baseline in (("vs_float_relu", "float_relu"), ("vs_ort_int8_relu", "ort_int8_relu")):
            value = timed.ratio("int8_lut", baseline)
            target = TARGETS[ratio].get(batch)
            entry[ratio] = {"ratio": round(value, 3), "target": target, "met": None if target is None else value <= target}
        entry["float_lut_vs_float_relu"] = round(timed.ratio("float_lut", "float_relu"), 3)
        result[f"batch_{batch}"] = entry
        print(f"{family} batch {batch}: {entry}")
    profile_batch = {"mlp": 1024, "convnet": 32}[family]
    x_profile = np.ascontiguousarray(x[rng.integers(0, len(x), profile_batch)])
    result["kernels_us"] = {"batch": profile_batch, **{name: kernel_profile(models[name], x_profile, 5 if quick else 30)
                                                        for name in ("float_relu", "int8_lut", "ort_int8_relu")}}
    return result


ACCURACY_SETS = ("digits", "breast_cancer", "wine", "diabetes", "mnist5k")
ACCURACY_SEEDS = (0, 1, 2)
BOUNDS = {"accuracy": -0.005, "rmse": 0.05}  # int8 minus float accuracy at least; relative RMSE increase at most


def measure_accuracy(datasets: list[str], seeds: list[int], quick: bool) -> dict[str, Any]:
    """Post-training int8 on each benchmark set: the test metric of the float and the int8 export of one LUT MLP per seed."""
    from lutnet.training.trainer import TrainConfig, train

    rows = []
    with tempfile.TemporaryDirectory(prefix="lutnet-int8-accuracy-") as work:
        for dataset in datasets:
            for seed in seeds:
                out = Path(work, f"{dataset}_{seed}")
                epochs = {"epochs": 3} if quick else {}
                train(TrainConfig(out=str(out), dataset=dataset, seed=seed, threads=1, quiet=True, **epochs))
                result = export_model(out, quantize="int8", max_accuracy_drop=1.0, max_rmse_increase=1e9)
                evaluation = result.quantization.evaluation
                bound = BOUNDS[evaluation.metric]
                within = evaluation.change >= bound if evaluation.metric == "accuracy" else evaluation.change <= bound
                rows.append({"dataset": dataset, "seed": seed, "metric": evaluation.metric, "float": evaluation.float_value,
                             "int8": evaluation.int8_value, "change": evaluation.change, "within_bound": within,
                             "class_agreement": evaluation.class_agreement})
                print(rows[-1])
    return {"datasets": datasets, "seeds": seeds, "quick": quick, "bounds": BOUNDS, "runs": rows,
            "all_within_bounds": all(row["within_bound"] for row in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 training epochs and fewer repeats (a smoke run; accuracy is not meaningful)")
    parser.add_argument("--families", nargs="+", choices=list(MODELS), default=list(MODELS), help="reference models to run (default: both)")
    parser.add_argument("--accuracy", action="store_true",
                        help=f"instead: the int8 accuracy change on {', '.join(ACCURACY_SETS)} (seeds {list(ACCURACY_SEEDS)}), to int8_accuracy.json")
    parser.add_argument("--datasets", nargs="+", choices=ACCURACY_SETS, default=list(ACCURACY_SETS), help="--accuracy: data sets")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(ACCURACY_SEEDS), help="--accuracy: seeds")
    args = parser.parse_args(argv)
    if args.accuracy:
        return record("benchmarks.int8", "int8_accuracy", lambda: measure_accuracy(args.datasets, args.seeds, args.quick))

    def measure() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="lutnet-int8-") as work:
            families = {family: measure_family(family, args.quick, Path(work)) for family in args.families}
        return {"threads": 1, "batches": list(BATCHES), "targets": {k: {str(b): t for b, t in v.items()} for k, v in TARGETS.items()},
                "quick": args.quick, "dataset": "digits", "families": families}

    return record("benchmarks.int8", "int8", measure)


if __name__ == "__main__":
    raise SystemExit(main())
