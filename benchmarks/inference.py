"""Suite 2: onnxruntime CPU latency of budget-matched digits models (lutnet fused LUT, ReLU, GELU, the peers) and torch eager.

Run ``python -m benchmarks.inference [--quick]``; writes ``benchmarks/results/inference.json``. Every model has the
accuracy suite's digits budget (~20k trainable parameters): lutnet's MLPs at their budget widths (weights do not
change the speed of these graphs, so they are synthetic, built through the checkpoint contract), the peers'
models trained briefly by their runners and exported with ``torch.onnx.export``. Batches 1, 32, 1024 at 1 and 2
intra-op threads, runners interleaved round by round (benchmarks.export_speed); ratios to the ReLU MLP of the
same run; node counts per graph. About 2 minutes on 2 cores (``--quick``: ~1 minute, noisier).
"""
from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from benchmarks.accuracy import BUDGETS, DEPTH, LEARNING_PEERS, TRAINED_MODELS, WORK, lutnet_width
from benchmarks.common import record
from benchmarks.export_speed import interleaved, onnx_runner, synthetic_checkpoint, torch_runner
from benchmarks.peers.datasets import split_arrays, write_npz
from benchmarks.peers.setup import PEERS, ensure
from benchmarks.peers.smoke import WORK as PEER_WORK
from benchmarks.peers.smoke import run_learning_peer
from lutnet.export.graph import build_graph
from lutnet.checkpoint import Checkpoint
from lutnet.training.data import load_dataset
from lutnet.training.trainer import TrainConfig, model_spec

DATASET = "digits"
BATCHES = (1, 32, 1024)
THREADS = (1, 2)
EAGER = "torch_eager_lut_linear"


def lutnet_checkpoints() -> dict[str, Checkpoint]:
    """A synthetic checkpoint of each lutnet variant at the digits budget width."""
    data = load_dataset(DATASET)
    checkpoints = {}
    for name, overrides in TRAINED_MODELS.items():
        width, _ = lutnet_width(data, overrides, BUDGETS[DATASET])
        config = TrainConfig(dataset=DATASET, hidden=(width,) * DEPTH, **overrides)
        checkpoints[name] = synthetic_checkpoint(model_spec(config, data))
    return checkpoints


def peer_graphs(quick: bool) -> dict[str, Path]:
    """Each learning peer trained briefly on the digits split at the budget and exported; failed exports are left out."""
    data = load_dataset(DATASET)
    for folder in (WORK, PEER_WORK):
        folder.mkdir(parents=True, exist_ok=True)
    split_path = WORK / f"{DATASET}_inference.npz"
    write_npz(split_arrays(data), split_path)
    graphs = {}
    for name in LEARNING_PEERS:
        ensure(PEERS[name])
        result = run_learning_peer(PEERS[name], [split_path], params=BUDGETS[DATASET], seeds=[0], max_epochs=2 if quick else 5, max_seconds=5.0)
        if result["onnx"]["exported"]:
            graphs[name] = Path(result["onnx"]["path"])
    return graphs


def graph_facts(proto: onnx.ModelProto) -> dict[str, Any]:
    nodes = proto.graph.node
    return {"nodes": len(nodes), "op_types": dict(Counter(node.op_type for node in nodes).most_common())}


def runners_at(graphs: dict[str, onnx.ModelProto], eager: Checkpoint, batch: int, threads: int) -> dict[str, Callable[[], object]]:
    x = np.random.default_rng(batch).normal(size=(batch, eager.spec.input_shape[0])).astype(np.float32)
    runners = {name: onnx_runner(proto, threads, x) for name, proto in graphs.items()}
    run_eager = torch_runner(eager, threads, x)
    if run_eager is not None:
        runners[EAGER] = run_eager
    return runners


def measure(quick: bool, with_peers: bool) -> dict[str, Any]:
    checkpoints = lutnet_checkpoints()
    graphs = {name: build_graph(checkpoint) for name, checkpoint in checkpoints.items()}
    if with_peers:
        graphs |= {name: onnx.load(str(path)) for name, path in peer_graphs(quick).items()}
    rounds = 6 if quick else 30
    runs = []
    for threads in THREADS:
        for batch in BATCHES:
            timings = interleaved(runners_at(graphs, checkpoints["lut_linear"], batch, threads), batch, rounds)
            relu = timings["relu"]["median"]
            runs.append({"batch": batch, "threads": threads, "timings_s": timings,
                         "ratio_to_relu": {name: t["median"] / relu for name, t in timings.items()}})
    return {
        "settings": {"dataset": DATASET, "budget": BUDGETS[DATASET], "batches": list(BATCHES), "threads": list(THREADS), "rounds": rounds,
                     "lutnet_widths": {name: list(c.spec.hidden) for name, c in checkpoints.items()},
                     "eager_model": "lut_linear, separated (lutnet.training.models)"},
        "graphs": {name: graph_facts(proto) for name, proto in graphs.items()},
        "params": {name: int(sum(np.asarray(t).size for k, t in c.tensors.items() if not k.endswith((".lo", ".hi")))) for name, c in checkpoints.items()},
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 rounds instead of 30 (a smoke run, noisier)")
    parser.add_argument("--no-peers", action="store_true", help="lutnet graphs only")
    args = parser.parse_args(argv)
    return record("benchmarks.inference", "inference", lambda: measure(args.quick, not args.no_peers))


if __name__ == "__main__":
    raise SystemExit(main())
