"""Latency of fused LUT models in onnxruntime against the same-shape ReLU model and PyTorch eager on the separated model.

Run ``python -m benchmarks.export_speed [--quick]``; writes ``benchmarks/results/export_speed.json``.
Ratios are taken within one run (medians, candidates interleaved round by round), never across runs.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.common import paired_rounds, summarize, write_results
from lutnet.checkpoint import Checkpoint, expected_tensor_shapes
from lutnet.lut import init_table
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.export.graph import build_graph

REFERENCE_SHAPE = ModelSpec(family="mlp", input_shape=(64,), num_outputs=10, hidden=(256, 256), lut=LUTSpec(bins=64))
CONVNETS = {
    "convnet_8x8": ModelSpec(family="convnet", input_shape=(1, 8, 8), num_outputs=10, hidden=(16, 32), lut=LUTSpec(bins=64)),
    "convnet_28x28": ModelSpec(family="convnet", input_shape=(1, 28, 28), num_outputs=10, hidden=(16, 32), lut=LUTSpec(bins=64)),
}
LOOKUPS = (("nearest", "clamp"), ("nearest", "linear"), ("linear", "clamp"), ("linear", "linear"))
TARGETS = {"nearest": {1: 1.3, 1024: 1.5}, "linear": {1: 1.5, 1024: 2.0}}  # fused LUT / ReLU at 1 thread


def synthetic_checkpoint(spec: ModelSpec, seed: int = 0) -> Checkpoint:
    """A checkpoint of ``spec`` through the lutnet contract: He-scaled weights, relu tables plus noise, standardized inputs."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_tensor_shapes(spec).items():
        if name.endswith("weight"):
            tensors[name] = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), size=shape)
        elif name.endswith("bias"):
            tensors[name] = rng.normal(0.0, 0.1, size=shape)
        elif name.endswith(".lo") or name.endswith(".hi"):
            tensors[name] = np.full(shape, spec.lut.range[0 if name.endswith(".lo") else 1])
    for i in range(len(spec.hidden)) if spec.activation == "lut" else ():
        table = init_table(spec.lut.init, tensors[f"act.{i}.lo"], tensors[f"act.{i}.hi"], spec.lut.bins)
        tensors[f"act.{i}.table"] = table + rng.normal(0.0, 0.02, size=table.shape)
    width = spec.input_shape[0]
    return Checkpoint(
        spec=spec,
        tensors={k: v.astype(np.float32) for k, v in tensors.items()},
        labels=[str(k) for k in range(spec.num_outputs)],
        input_mean=rng.normal(size=width),
        input_std=rng.uniform(0.5, 2.0, size=width),
    )


def variant(spec: ModelSpec, activation: str, mode: str = "linear", extrapolate: str = "linear") -> ModelSpec:
    return dataclasses.replace(spec, activation=activation, lut=dataclasses.replace(spec.lut, mode=mode, extrapolate=extrapolate))


def session(proto: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def onnx_runner(proto: onnx.ModelProto, threads: int, x: np.ndarray) -> Callable[[], object]:
    s = session(proto, threads)
    return lambda: s.run(None, {"input": x})


def torch_runner(checkpoint: Checkpoint, threads: int, x: np.ndarray) -> Callable[[], object] | None:
    """PyTorch eager on the separated model (training's modules), or None where training/torch are not installed."""
    try:
        import torch

        from lutnet.training.models import model_from_checkpoint
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model = model_from_checkpoint(checkpoint).eval()
    tensor = torch.from_numpy(x)

    def run() -> object:
        with torch.inference_mode():
            return model(tensor)

    return run


def interleaved(runners: dict[str, Callable[[], object]], batch: int, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per call of each runner (median, p10, p90), measured in short round-robin rounds so load drift hits all alike."""
    timed = paired_rounds(runners, rounds=rounds, repeats=max(2, 64 // batch), warmup=2)
    return {name: summarize(values) for name, values in timed.samples.items()}


def inputs(spec: ModelSpec, batch: int) -> np.ndarray:
    return np.random.default_rng(batch).normal(size=(batch, *spec.input_shape)).astype(np.float32)


def measure(spec: ModelSpec, batch: int, threads: int, rounds: int, with_torch: bool) -> dict[str, object]:
    """ReLU baseline, fused LUT in every lookup (and torch eager on the separated linear LUT model) at one batch size."""
    x = inputs(spec, batch)
    checkpoints = {"relu": synthetic_checkpoint(variant(spec, "relu"))}
    checkpoints |= {f"lut_{mode}_{extrapolate}": synthetic_checkpoint(variant(spec, "lut", mode, extrapolate)) for mode, extrapolate in LOOKUPS}
    runners = {name: onnx_runner(build_graph(checkpoint), threads, x) for name, checkpoint in checkpoints.items()}
    eager = torch_runner(checkpoints["lut_linear_linear"], threads, x) if with_torch else None
    if eager is not None:
        runners["torch_eager_lut_linear_linear"] = eager
    timings = interleaved(runners, batch, rounds)
    relu = timings["relu"]["median"]
    ratios = {f"{name}/relu": timings[name]["median"] / relu for name in timings if name != "relu"}
    # On a shared machine the p10 is the steadier estimate of the intrinsic cost; both are recorded.
    ratios |= {f"{name}/relu (p10)": timings[name]["p10"] / timings["relu"]["p10"] for name in timings if name != "relu"}
    if eager is not None:
        ratios["torch_eager/fused"] = timings["torch_eager_lut_linear_linear"]["median"] / timings["lut_linear_linear"]["median"]
    return {"batch": batch, "threads": threads, "timings_s": timings, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export_speed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, noisier)")
    args = parser.parse_args(argv)
    rounds = 10 if args.quick else 40
    runs = [measure(REFERENCE_SHAPE, batch, threads, rounds, with_torch=threads == 1) for threads in (1, 2) for batch in (1, 32, 1024)]
    convnets = {name: [measure(spec, batch, 1, rounds, with_torch=True) for batch in (1, 32)] for name, spec in CONVNETS.items()}
    targets = []
    for mode, extrapolate in LOOKUPS:
        for batch, limit in TARGETS[mode].items():
            run = next(r for r in runs if r["batch"] == batch and r["threads"] == 1)
            ratio = run["ratios"][f"lut_{mode}_{extrapolate}/relu"]
            targets.append({"lookup": f"{mode}_{extrapolate}", "batch": batch, "ratio": ratio, "target": limit, "met": ratio <= limit})
    eager = next(r for r in runs if r["batch"] == 1 and r["threads"] == 1)["ratios"].get("torch_eager/fused")
    if eager is not None:
        targets.append({"lookup": "linear_linear", "batch": 1, "torch_eager_over_fused": eager, "target": 3.0, "met": eager >= 3.0})
    path = write_results("export_speed", {"rounds": rounds, "reference_shape": REFERENCE_SHAPE.to_dict(), "mlp": runs, "convnet": convnets, "targets": targets})
    for target in targets:
        print(target)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
