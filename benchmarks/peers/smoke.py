"""First numbers for the peers on digits: accuracy, s/epoch, ONNX latency, and serving req/s.

``python -m benchmarks.peers.smoke`` sets up the peers' environments (skipped when up to date), trains each learning
peer at ~20k parameters on a fixed sklearn digits split, times its ONNX export with onnxruntime (1 thread, batch
1 and 1024), serves one ONNX model (a ReLU MLP, or ``--serve-onnx``) from KServe and BentoML after checking their
answers against onnxruntime in-process, loads them with wrk (benchmarks.serve_speed's runner; ``apt-get install
wrk``) at ``--concurrency`` (default 1), and writes
benchmarks/results/peers_smoke.json. About 2 minutes once the environments exist (set-up: about 4 minutes).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from benchmarks.common import summarize, time_call, write_results
from benchmarks.peers.datasets import sklearn_digits, write_npz
from benchmarks.peers.serving import HOST
from benchmarks.peers.setup import PEERS, REPOSITORY, Peer, ensure
from benchmarks.serve_speed import WORK as SERVE_SPEED_WORK
from benchmarks.serve_speed import Scenario, cores, free_port, run_wrk
from lutnet.errors import LutnetError

WORK = REPOSITORY / "benchmarks" / ".work" / "peers"
LATENCY_REPEATS = {1: 2000, 1024: 100}
JSON_HEADERS = {"Content-Type": "application/json"}
SERVED_HIDDEN = 266  # 64-266-10 ReLU MLP: 19,956 parameters, the size of the learning peers
LEARNING_PEERS = [peer for peer in PEERS.values() if peer.role == "learning"]


def run_learning_peer(peer: Peer, splits: Sequence[Path], *, params: int, seeds: Sequence[int], max_epochs: int, max_seconds: float,
                      export: bool = True) -> dict[str, object]:
    """Train one peer in its own environment, once per seed (on one split, or one split per seed); its runner prints one JSON object.

    ``export`` writes the first seed's model to ONNX (``WORK/<peer>.onnx``), for suites that time or check the graph.
    """
    command = [
        str(peer.python), "-m", f"benchmarks.peers.run_{peer.name}", *map(str, splits), "--params", str(params), "--seeds", *map(str, seeds),
        "--max-epochs", str(max_epochs), "--max-seconds", str(max_seconds), *(["--onnx-out", str(WORK / f"{peer.name}.onnx")] if export else []),
    ]
    completed = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
    if completed.returncode != 0:
        raise LutnetError(f"{peer.name} runner failed (exit {completed.returncode}): {completed.stderr.strip().splitlines()[-1:]}")
    return json.loads(completed.stdout)


def onnx_latency(path: Path, batch: int, *, threads: int = 1, repeats: int) -> dict[str, float]:
    """Seconds per session.run at this batch size (median, p10, p90) with ``threads`` intra-op threads."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    feed = {source.name: np.random.default_rng(0).standard_normal((batch, source.shape[1])).astype(np.float32)}
    return summarize(time_call(lambda: session.run(None, feed), repeats=repeats, warmup=10))


def relu_mlp_onnx(n_features: int, hidden: int, n_outputs: int, seed: int = 0) -> onnx.ModelProto:
    """A Gemm-Relu-Gemm graph with random weights and a dynamic batch: the model every serving peer serves."""
    rng = np.random.default_rng(seed)
    weights = {
        "w1": (rng.standard_normal((n_features, hidden)) / np.sqrt(n_features)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.standard_normal((hidden, n_outputs)) / np.sqrt(hidden)).astype(np.float32),
        "b2": np.zeros(n_outputs, np.float32),
    }
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
         helper.make_node("Gemm", ["a", "w2", "b2"], ["output"])],
        "relu_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_outputs])],
        [numpy_helper.from_array(array, name) for name, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class ServingPeer:
    """How to start one serving peer and talk to its batch-1 predict route."""

    peer: Peer
    ready_path: str
    predict_path: str
    request: Callable[[list[float]], dict]
    answer: Callable[[object], np.ndarray]


SERVING_PEERS = [
    ServingPeer(
        PEERS["kserve"], "/v2/health/ready", "/v2/models/model/infer",
        lambda row: {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]},
        lambda body: np.asarray(body["outputs"][0]["data"], np.float32).reshape(body["outputs"][0]["shape"]),
    ),
    ServingPeer(
        PEERS["bentoml"], "/readyz", "/predict",
        lambda row: {"rows": [row]},
        lambda body: np.asarray(body, np.float32),
    ),
]


def http_json(url: str, body: dict | None = None, timeout: float = 5.0) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text.strip() else None


@contextlib.contextmanager
def running_server(serving: ServingPeer, model: Path, port: int, log: Path, pin: list[str]) -> Iterator[subprocess.Popen]:
    """Start the peer's launcher in its environment (under the ``pin`` taskset prefix), wait until ready, stop its process group."""
    command = [*pin, str(serving.peer.python), "-m", f"benchmarks.peers.serve_{serving.peer.name}", "--onnx", str(model), "--port", str(port)]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=REPOSITORY, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(process, f"http://{HOST}:{port}{serving.ready_path}", log)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_ready(process: subprocess.Popen, url: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LutnetError(f"server exited with {process.returncode} before it was ready; see {log}")
        with contextlib.suppress(OSError):
            http_json(url, timeout=1.0)
            return
        time.sleep(0.25)
    raise LutnetError(f"server not ready at {url} after {timeout:.0f} s; see {log}")


def serving_process(pid: int) -> int:
    """The process that answers requests: BentoML's launcher hands them to its one worker child, KServe's to no one."""
    while len(children := Path(f"/proc/{pid}/task/{pid}/children").read_text().split()) == 1:
        pid = int(children[0])
    return pid


def serve_and_measure(serving: ServingPeer, model: Path, rows: np.ndarray, *, concurrencies: Sequence[int], duration_s: int) -> dict[str, object]:
    """Check the peer answers like onnxruntime in-process, then load it with wrk (serve_speed's runner) at each concurrency."""
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: rows})[0]
    server_pin, load_pin = cores()
    name = serving.peer.name
    body = WORK / f"{name}_b1.json"
    body.write_text(json.dumps(serving.request(rows[0].tolist())))
    SERVE_SPEED_WORK.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://{HOST}:{port}"
    with running_server(serving, model, port, WORK / f"serve_{name}.log", server_pin) as process:
        answers = np.concatenate([serving.answer(http_json(base + serving.predict_path, serving.request(row.tolist()))) for row in rows])
        max_abs_diff = float(np.abs(answers - expected).max())
        if max_abs_diff > 1e-5:
            raise LutnetError(f"{name} answers differ from onnxruntime", expected="max |diff| <= 1e-5", got=max_abs_diff)
        server = (port, serving_process(process.pid))
        loads = {
            f"c{n}": run_wrk(load_pin, server, Scenario(f"peer_{name}_c{n}", name, serving.predict_path, body.name, n), body, JSON_HEADERS, duration_s)
            for n in concurrencies
        }
    return {"peer": name, "route": serving.predict_path, "max_abs_diff_vs_ort": max_abs_diff, **loads}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (the digits split is fixed)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--serve-onnx", type=Path, default=None, help="ONNX model taking digits' 64 raw features (default: a ReLU MLP)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1], help="load levels for the serving peers")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk load per serving peer and level")
    args = parser.parse_args(argv)
    try:
        path = write_results("peers_smoke", smoke(args))
    except LutnetError as error:
        print(f"benchmarks.peers.smoke: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path.relative_to(REPOSITORY)}", file=sys.stderr)
    return 0


def smoke(args: argparse.Namespace) -> dict[str, object]:
    if shutil.which("wrk") is None:
        raise LutnetError("the serving peers are loaded with wrk", expected="wrk on PATH (apt-get install wrk)", got="none")
    WORK.mkdir(parents=True, exist_ok=True)
    setup = [ensure(peer) for peer in tqdm(PEERS.values(), desc="peer environments")]
    split = sklearn_digits(seed=0)
    split_path = WORK / "digits.npz"
    write_npz(split, split_path)
    learning = []
    for peer in tqdm(LEARNING_PEERS, desc="learning peers"):
        result = run_learning_peer(peer, [split_path], params=args.params, seeds=args.seeds, max_epochs=args.max_epochs, max_seconds=args.max_seconds)
        if result["onnx"]["exported"]:
            path = Path(result["onnx"]["path"])
            result["onnx"]["latency_seconds_1_thread"] = {f"b{batch}": onnx_latency(path, batch, repeats=repeats) for batch, repeats in LATENCY_REPEATS.items()}
        learning.append(result)
    model = args.serve_onnx or WORK / "relu_mlp.onnx"
    if args.serve_onnx is None:
        onnx.save(relu_mlp_onnx(split.n_features, SERVED_HIDDEN, split.n_outputs), model)
    rows = split.X_test[:8]
    serving = [
        serve_and_measure(peer, model, rows, concurrencies=args.concurrency, duration_s=args.duration)
        for peer in tqdm(SERVING_PEERS, desc="serving peers")
    ]
    return {
        "setup": setup,
        "learning": learning,
        "serving_model": str(model),
        "serving_notes": "one worker, onnxruntime 1 intra-op thread, per-request logging off, server and wrk on separate cores (taskset)",
        "serving": serving,
    }


if __name__ == "__main__":
    sys.exit(main())
