"""Your own module, exported: fused LUT latency vs the same model with its original activations, and what folding gains.

For each of the four examples (``examples/``): the model trained a few steps, exported by ``export_module``
(folded, and with ``fold=False``), and the same model with every LUT layer put back to the activation its
table started as, exported by plain ``torch.onnx.export``. onnxruntime, 1 thread, batch 1 and 256; the
three are timed in interleaved rounds; a ratio is the median over rounds of the ratio of their medians
(``benchmarks.common.paired_rounds``). Targets: fused / original <= 1.5x at batch 1
and <= 2.0x at batch 256.
"""
from __future__ import annotations

import argparse
import copy
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from benchmarks.common import paired_rounds, record
from examples import cnn, residual_mlp, tabular, transformer
from examples.common import Example, train
from lutnet.export import export_module
from lutnet.training import LUTActivation

EXAMPLES = (residual_mlp.EXAMPLE, cnn.EXAMPLE, tabular.EXAMPLE, transformer.EXAMPLE)
ORIGINAL = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
BATCHES = (1, 256)
TARGETS = {1: 1.5, 256: 2.0}


def original_activations(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LUT layer replaced by the standard activation its table started as."""
    copied = copy.deepcopy(model)
    for name, module in list(copied.named_modules()):
        if isinstance(module, LUTActivation):
            parent, _, attribute = name.rpartition(".")
            setattr(copied.get_submodule(parent) if parent else copied, attribute, ORIGINAL[module.init]())
    return copied


def plain_onnx(model: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str]) -> onnx.ModelProto:
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(model.eval(), inputs, dynamo=True, input_names=names, dynamic_shapes=tuple({0: batch} for _ in inputs), optimize=True)
    return program.model_proto


def session(proto: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def measure_example(example: Example, quick: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    inputs, targets = example.data(512, 0)
    model = train(example.build(), inputs, targets, example.task, 10 if quick else 50)
    sample = tuple(x[:256] for x in inputs)
    fused = export_module(model, sample, task=example.task, input_names=example.input_names)
    names = [i.name for i in fused.graph.input]
    graphs = {"fused": fused, "unfolded": export_module(model, sample, task=example.task, input_names=example.input_names, fold=False),
              "original": plain_onnx(original_activations(model), sample, names)}
    sessions = {kind: session(proto) for kind, proto in graphs.items()}
    result: dict[str, Any] = {"nodes": {kind: len(proto.graph.node) for kind, proto in graphs.items()}}
    for batch in BATCHES:
        feeds = {name: np.ascontiguousarray(x[:batch].numpy()) for name, x in zip(names, sample, strict=True)}
        repeats = (50 if quick else 100) if batch == 1 else (10 if quick else 20)
        calls = {kind: (lambda s=s, feeds=feeds: s.run(None, feeds)) for kind, s in sessions.items()}
        timed = paired_rounds(calls, rounds=3 if quick else 15, repeats=repeats)
        fused_vs_original = timed.ratio("fused", "original")
        result[f"batch_{batch}"] = {
            "median_us": {kind: round(timed.median(kind) * 1e6, 2) for kind in sessions},
            "rounds": len(timed.rounds),
            "fused_vs_original": round(fused_vs_original, 3),
            "unfolded_vs_fused": round(timed.ratio("unfolded", "fused"), 3),
            "target": TARGETS[batch],
            "met": fused_vs_original <= TARGETS[batch],
        }
        print(f"{example.name} batch {batch}: {result[f'batch_{batch}']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.module_export", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return record("benchmarks.module_export", "module_export", lambda: {
        "threads": 1, "batches": list(BATCHES), "targets": {str(k): v for k, v in TARGETS.items()},
        "examples": {example.name: measure_example(example, args.quick) for example in EXAMPLES},
    })


if __name__ == "__main__":
    raise SystemExit(main())
