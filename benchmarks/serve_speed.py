"""Serving speed of ``lutnet serve`` against a bare FastAPI endpoint, measured in one run with ``wrk``.

``python -m benchmarks.serve_speed [--duration 2] [--repeats 5]`` exports the digits model's shape with
``lutnet train``'s defaults (MLP 64-256-256-10 with 16-bin LUT activations; random weights: speed does not
depend on their values), starts every server at once on 127.0.0.1 pinned to one core, and loads one at a
time from ``wrk`` pinned to another core, rounds interleaved so drift hits every scenario alike. Scenarios:
the bare endpoint, the lean endpoint and v2 JSON batch 1 at concurrency 1/8/64; /v1 predict; JSON vs binary
tensors at batch 256 (lutnet and the lean endpoint, and lutnet on the same shape with ReLU); batching on vs off and the execution settings at
concurrency 1 and 64. Servers are stopped by PID. Writes ``benchmarks/results/serve_speed.json`` (medians,
every run, targets). Needs ``wrk`` (``apt-get install wrk``). About 5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

from benchmarks.common import write_results
from lutnet.export.exporter import export_to_repository
from lutnet.checkpoint import write_checkpoint
from lutnet.errors import LutnetError
from lutnet.spec import LUTSpec, ModelSpec
from tests.export.checkpoints import random_checkpoint

WORK = Path(__file__).resolve().parent / ".work" / "serve_speed"
HOST = "127.0.0.1"
INFER = "/v2/models/digits/infer"
RELU_INFER = "/v2/models/digits_relu/infer"  # the same shape with ReLU: what the batch-256 ratio is with cheaper compute
TARGETS = {"json_c1_vs_bare": 0.75, "p99_c64_ms": 10.0, "binary_vs_json_b256": 2.0, "json_c1_vs_lean": 0.9, "json_c64_vs_lean": 0.9}
WRK_SCRIPT = """
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
{headers}
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format('{{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %.1f, "p95_us": %.1f, "p99_us": %.1f}}\\n', summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Scenario:
    """One load: which server, which path and body, how many connections."""

    name: str
    server: str
    path: str
    body: str
    concurrency: int


APPS = {  # reference servers: name -> uvicorn factory in this module, and the route that says it is up
    "bare": ("bare_app", "/constant"),
    "lean": ("lean_app", "/ready"),
}
SERVERS = {  # name -> extra flags of `lutnet serve` (None: a reference app of APPS)
    "bare": None,
    "lean": None,
    "lutnet": [],  # the defaults: execution auto (small calls on the event loop), dynamic batching on
    "lutnet_unbatched": ["--no-batching"],
    "lutnet_inline": ["--execution", "inline", "--no-batching"],
    "lutnet_inline_batching": ["--execution", "inline", "--batching"],
    "lutnet_thread": ["--execution", "thread", "--batching"],
    "lutnet_thread_unbatched": ["--execution", "thread", "--no-batching"],
}
VARIANTS = ("unbatched", "inline", "inline_batching", "thread", "thread_unbatched")
SCENARIOS = [  # grouped so that the scenarios a ratio compares run one after another in every round
    *(
        scenario
        for c in (1, 8, 64)
        for scenario in (
            Scenario(f"bare_c{c}", "bare", "/constant", "json_b1", c),
            Scenario(f"v2_json_b1_c{c}", "lutnet", INFER, "json_b1", c),
            Scenario(f"lean_c{c}", "lean", INFER, "json_b1", c),
            *(Scenario(f"{variant}_v2_json_b1_c{c}", f"lutnet_{variant}", INFER, "json_b1", c) for variant in VARIANTS if c != 8),
        )
    ),
    Scenario("v1_predict_b1_c1", "lutnet", "/v1/models/digits:predict", "instances_b1", 1),
    Scenario("v2_json_b256_c1", "lutnet", INFER, "json_b256", 1),
    Scenario("v2_binary_b256_c1", "lutnet", INFER, "binary_b256", 1),
    Scenario("lean_json_b256_c1", "lean", INFER, "json_b256", 1),
    Scenario("lean_binary_b256_c1", "lean", INFER, "binary_b256", 1),
    Scenario("relu_json_b256_c1", "lutnet", RELU_INFER, "json_b256", 1),
    Scenario("relu_binary_b256_c1", "lutnet", RELU_INFER, "binary_b256", 1),
]


def bare_app() -> Any:
    """The baseline: a FastAPI app whose one endpoint returns a constant (uvicorn factory)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/constant")
    async def constant() -> dict[str, str]:
        return {"status": "ok"}

    return app


def lean_app() -> Any:
    """The lean ceiling for a model server: FastAPI + orjson + onnxruntime, one route, no validation or metrics.

    It parses the same v2 bodies as lutnet's infer route (JSON, or binary tensors after a JSON header) and
    answers the same way, computing on the event loop; the model path comes from ``LUTNET_BENCH_MODEL``.
    """
    import onnxruntime as ort
    from fastapi import FastAPI, Response

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(os.environ["LUTNET_BENCH_MODEL"], options, providers=["CPUExecutionProvider"])

    async def ready(request: Any) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def infer(request: Any) -> Response:
        body = await request.body()
        header_length = request.headers.get("inference-header-content-length")
        if header_length is not None:  # binary tensors both ways, as tritonclient sends and asks for them
            end = int(header_length)
            tensor = orjson.loads(body[:end])["inputs"][0]
            y = session.run(None, {tensor["name"]: np.frombuffer(body, dtype=np.float32, offset=end).reshape(tensor["shape"])})[0]
            blob = y.tobytes()
            output = {"name": "output", "shape": list(y.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(blob)}}
            header = orjson.dumps({"model_name": "digits", "outputs": [output]})
            return Response(header + blob, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(len(header))})
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        y = session.run(None, {tensor["name"]: x})[0]
        output = {"name": "output", "shape": list(y.shape), "datatype": "FP32", "data": y.ravel().tolist()}
        return Response(orjson.dumps({"model_name": "digits", "outputs": [output]}), media_type="application/json")

    app = FastAPI()
    app.add_route("/ready", ready, methods=["GET"])  # plain Starlette routes: no parameter injection on the hot path
    app.add_route(INFER, infer, methods=["POST"])
    return app


def export_digits(root: Path) -> Path:
    """A repository with the digits model's shape and settings (what ``make demo`` trains and serves), exported by
    ``lutnet export``'s own code, and the same shape with ReLU as ``digits_relu``; random weights, as speed does
    not depend on their values."""
    spec = ModelSpec(family="mlp", input_shape=(64,), num_outputs=10, hidden=(256, 256), lut=LUTSpec())  # `lutnet train`'s defaults
    shutil.rmtree(root, ignore_errors=True)
    for name, model_spec in (("digits", spec), ("digits_relu", dataclasses.replace(spec, activation="relu"))):
        write_checkpoint(random_checkpoint(model_spec, seed=0), root / name)
        export_to_repository(root / name, root / "models", name)
    return root / "models"


def served_model(repository: Path) -> Path:
    """The LUT digits model every server answers with (the lean endpoint, and the peers in benchmarks.serving)."""
    return repository / "digits" / "1" / "model.onnx"


def bodies(root: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    """Request bodies written to files for wrk, with their headers (binary ones carry no Content-Type, like tritonclient)."""
    rng = np.random.default_rng(0)
    b1, b256 = (rng.integers(0, 17, size=(n, 64)).astype(np.float32) for n in (1, 256))

    def tensor(x: np.ndarray, **extra: Any) -> dict[str, Any]:
        return {"name": "input", "shape": list(x.shape), "datatype": "FP32", **extra}

    binary_header = orjson.dumps({"inputs": [tensor(b256, parameters={"binary_data_size": b256.nbytes})], "parameters": {"binary_data_output": True}})
    json_headers = {"Content-Type": "application/json"}
    contents = {
        "json_b1": (orjson.dumps({"inputs": [tensor(b1, data=b1.reshape(-1).tolist())]}), json_headers),
        "json_b256": (orjson.dumps({"inputs": [tensor(b256, data=b256.reshape(-1).tolist())]}), json_headers),
        "binary_b256": (binary_header + b256.tobytes(), {"Inference-Header-Content-Length": str(len(binary_header))}),
        "instances_b1": (orjson.dumps({"instances": b1.tolist()}), json_headers),
    }
    files = {}
    for name, (content, headers) in contents.items():
        (root / f"{name}.body").write_bytes(content)
        files[name] = (root / f"{name}.body", headers)
    return files


def cores() -> tuple[list[str], list[str]]:
    """taskset prefixes: servers on the first allowed core, the load generator on the second."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or shutil.which("taskset") is None:
        return [], []
    return ["taskset", "-c", str(allowed[0])], ["taskset", "-c", str(allowed[1])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_servers(
    repository: Path, pin: list[str], servers: dict[str, list[str] | None] = SERVERS, work: Path = WORK
) -> Iterator[dict[str, tuple[int, int]]]:
    """Start every server of ``servers`` (name -> flags of ``lutnet serve``, None for an app of ``APPS``) logging to
    ``work/servers.log``; yields their (port, pid); stops each by its PID."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    ports = {name: free_port() for name in servers}
    log = (work / "servers.log").open("wb")
    try:
        for name, flags in servers.items():
            port = str(ports[name])
            if flags is None:
                factory = f"benchmarks.serve_speed:{APPS[name][0]}"
                command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--host", HOST, "--port", port, "--no-access-log"]
            else:
                command = [sys.executable, "-m", "lutnet", "serve", "--repository", str(repository), "--host", HOST, "--port", port, *flags]
            environment = {**os.environ, "LUTNET_BENCH_MODEL": str(served_model(repository))}
            processes[name] = subprocess.Popen([*pin, *command, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT, env=environment)
        for name in servers:
            wait_ready(processes[name], ports[name], APPS[name][1] if servers[name] is None else "/v2/health/ready")
        yield {name: (ports[name], processes[name].pid) for name in servers}
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
        log.close()


def wait_ready(process: subprocess.Popen[bytes], port: int, path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    probe = urllib.request.Request(f"http://{HOST}:{port}{path}", data=b"{}" if path == "/constant" else None)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LutnetError(f"server on port {port} exited with {process.returncode}; see {WORK / 'servers.log'}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(probe) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.2)
    raise LutnetError(f"server on port {port} not ready after {timeout_s} s")


def check_answer(port: int, path: str, body: Path, headers: dict[str, str]) -> None:
    """One request by hand first: a load test of error answers would measure nothing."""
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body.read_bytes(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status != 200:
            raise LutnetError(f"{path}", expected="status 200", got=answer.status)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(pin: list[str], server: tuple[int, int], scenario: Scenario, body: Path, headers: dict[str, str], duration_s: int) -> dict[str, Any]:
    """One wrk run; also the server's CPU time per answered request, which load on other cores disturbs less than req/s."""
    port, pid = server
    script = body.parent / f"{scenario.name}.lua"  # beside the body, in the calling suite's work folder
    header_lines = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items())
    script.write_text(WRK_SCRIPT.format(body=body, headers=header_lines))
    command = [
        *pin,
        "wrk",
        "-t1",
        f"-c{scenario.concurrency}",
        f"-d{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{HOST}:{port}{scenario.path}",
    ]
    cpu_before = cpu_seconds(pid)
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 30, check=True).stdout
    cpu_used = cpu_seconds(pid) - cpu_before
    result = json.loads(output.strip().splitlines()[-1])
    seconds = result["duration_us"] / 1e6
    return {
        "requests_per_second": (result["requests"] - result["non_2xx"]) / seconds,
        "server_cpu_us_per_request": 1e6 * cpu_used / max(result["requests"], 1),
        "p50_ms": result["p50_us"] / 1000,
        "p95_ms": result["p95_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "requests": result["requests"],
        "errors": result["non_2xx"] + result["socket_errors"],
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("requests_per_second", "server_cpu_us_per_request", "p50_ms", "p95_ms", "p99_ms")
    return {key: statistics.median(run[key] for run in runs) for key in keys} | {"errors": sum(run["errors"] for run in runs)}


def derived(summary: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The issue's targets and the comparisons the README reports, from the medians."""
    rps = {name: values["requests_per_second"] for name, values in summary.items()}
    ratios = {
        "json_c1_vs_bare": rps["v2_json_b1_c1"] / rps["bare_c1"],
        "json_c64_vs_bare": rps["v2_json_b1_c64"] / rps["bare_c64"],
        "json_c1_vs_lean": rps["v2_json_b1_c1"] / rps["lean_c1"],
        "json_c64_vs_lean": rps["v2_json_b1_c64"] / rps["lean_c64"],
        "p99_c64_ms": summary["v2_json_b1_c64"]["p99_ms"],
        "binary_vs_json_b256": rps["v2_binary_b256_c1"] / rps["v2_json_b256_c1"],
        "lean_binary_vs_json_b256": rps["lean_binary_b256_c1"] / rps["lean_json_b256_c1"],
        "binary_b256_vs_lean": rps["v2_binary_b256_c1"] / rps["lean_binary_b256_c1"],
        "relu_binary_vs_json_b256": rps["relu_binary_b256_c1"] / rps["relu_json_b256_c1"],
        "batching_on_vs_off_c1": rps["v2_json_b1_c1"] / rps["unbatched_v2_json_b1_c1"],
        "batching_on_vs_off_c64": rps["v2_json_b1_c64"] / rps["unbatched_v2_json_b1_c64"],
        "defaults_vs_thread_c1": rps["v2_json_b1_c1"] / rps["thread_v2_json_b1_c1"],
        "defaults_vs_thread_c64": rps["v2_json_b1_c64"] / rps["thread_v2_json_b1_c64"],
        "defaults_vs_inline_c1": rps["v2_json_b1_c1"] / rps["inline_v2_json_b1_c1"],
        "defaults_vs_inline_c64": rps["v2_json_b1_c64"] / rps["inline_v2_json_b1_c64"],
        "best_p99_c64_ms": min(values["p99_ms"] for name, values in summary.items() if name.endswith("_b1_c64")),
        "server_cpu_json_c1_vs_bare": summary["v2_json_b1_c1"]["server_cpu_us_per_request"] / summary["bare_c1"]["server_cpu_us_per_request"],
    }
    met = {
        "json_c1_vs_bare": ratios["json_c1_vs_bare"] >= TARGETS["json_c1_vs_bare"],
        "p99_c64_ms": ratios["p99_c64_ms"] <= TARGETS["p99_c64_ms"],
        "binary_vs_json_b256": ratios["binary_vs_json_b256"] >= TARGETS["binary_vs_json_b256"],
        "json_c1_vs_lean": ratios["json_c1_vs_lean"] >= TARGETS["json_c1_vs_lean"],
        "json_c64_vs_lean": ratios["json_c64_vs_lean"] >= TARGETS["json_c64_vs_lean"],
    }
    return {"comparisons": ratios, "targets": TARGETS, "targets_met": met}


def interleaved_rounds(servers: dict[str, Any], scenarios: Sequence[Scenario], files: dict[str, tuple[Path, dict[str, str]]],
                       client_pin: list[str], warmup: int, duration: int, repeats: int, desc: str) -> dict[str, list[dict[str, Any]]]:
    """Each scenario's answer checked and its server warmed up, then ``repeats`` rounds that run every scenario in turn,
    so load drift on the machine hits all of them alike; every run of every scenario. Each round starts one scenario
    later than the one before, so no scenario always runs first, or always right after the same one."""
    runs: dict[str, list[dict[str, Any]]] = {scenario.name: [] for scenario in scenarios}
    for scenario in scenarios:
        check_answer(servers[scenario.server][0], scenario.path, *files[scenario.body])
        run_wrk(client_pin, servers[scenario.server], scenario, *files[scenario.body], warmup)
    with tqdm(total=repeats * len(scenarios), desc=desc) as progress:
        for round_ in range(repeats):
            shift = round_ % len(scenarios)
            for scenario in [*scenarios[shift:], *scenarios[:shift]]:
                runs[scenario.name].append(run_wrk(client_pin, servers[scenario.server], scenario, *files[scenario.body], duration))
                progress.update()
    return runs


def py_spy() -> str:
    """The py-spy executable (on PATH, or beside this Python), or "" without one."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else "")


def sampled_stacks(server: tuple[int, int], client_pin: list[str], scenario: Scenario, body: Path, headers: dict[str, str],
                   seconds: int) -> list[tuple[str, int]]:
    """py-spy's samples of the server (500 Hz, idle excluded) while wrk runs ``scenario``: (stack, count) pairs, each
    stack ``;``-separated ``function (file:line)`` frames, outermost first."""
    port, pid = server
    with tempfile.TemporaryDirectory(prefix="lutnet-spy-") as folder:
        out = Path(folder, "stacks.txt")
        spy = subprocess.Popen([py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", "500", "-f", "raw", "-o", str(out), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_wrk(client_pin, server, scenario, body, headers, seconds)
        if spy.wait(timeout=seconds + 30) != 0 or not out.is_file():
            raise LutnetError("py-spy record", expected="a profile of the server (py-spy needs ptrace rights)", got=f"exit code {spy.returncode}")
        samples = []
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            samples.append((stack, int(count)))
        return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=2, help="seconds of load per run (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over every scenario; medians are reported (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of unmeasured load per scenario before the rounds (default 1)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.serve_speed: error: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    repository = export_digits(WORK / "digits")
    files = bodies(WORK)
    server_pin, client_pin = cores()
    load_before = os.getloadavg()
    with running_servers(repository, server_pin) as servers:
        runs = interleaved_rounds(servers, SCENARIOS, files, client_pin, args.warmup, args.duration, args.repeats, "serve_speed")
    summary = {name: medians(values) for name, values in runs.items()}
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    path = write_results(
        "serve_speed",
        {
            "setup": {
                "model": "the digits model's shape and lutnet train defaults: MLP 64-256-256-10, 16-bin linear LUTs, exported by lutnet export",
                "lutnet_defaults": "execution auto (calls predicted under 100 us on the event loop, larger ones in a thread), batching on",
                "servers": {name: flags for name, flags in SERVERS.items()},
                "scenarios": [asdict(s) for s in SCENARIOS],
                "server_pin": server_pin,
                "client_pin": client_pin,
                "client": wrk_version,
                "duration_s": args.duration,
                "repeats": args.repeats,
                "load_average_before_after": [load_before, os.getloadavg()],  # other jobs on the machine make the numbers noisy
            },
            "medians": summary,
            **derived(summary),
            "runs": runs,
        },
    )
    for name, values in summary.items():
        print(
            f"{name:32s} {values['requests_per_second']:7.0f} req/s  server cpu {values['server_cpu_us_per_request']:6.1f} us/req"
            f"  p50 {values['p50_ms']:7.3f} ms  p99 {values['p99_ms']:7.3f} ms  errors {values['errors']}"
        )
    print(json.dumps(derived(summary), indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
