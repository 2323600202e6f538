"""What the serving hardening (locked repository control, body limits, body deadlines) costs and buys, before and after.

The server before it (a git ref) and after it run side by side in one run.

``python -m benchmarks.hardening [--baseline REF] [--duration 3] [--repeats 5]`` serves the digits model's shape
(``benchmarks.serve_speed``'s export) from two servers with their defaults: this checkout, and ``REF``'s sources
put first on ``PYTHONPATH``. Both are pinned to one core, wrk to the other.

* **Speed:** batch-1 v2 JSON requests per second at concurrency 1 and 64, rounds interleaved between the two
  servers; medians and the after/before ratio. That comparison also carries everything else that changed since
  ``REF``, and requests/s between two server processes resolve only about 6% here (``benchmarks.monitor_cost``'s
  control), so the hardening's cost is measured inside one process too:
* **Profile:** ``py-spy`` (the ``dev`` extra) samples this checkout's server under the same load at concurrency 1 and
  64. The hardening's share is the samples in its code on the request path (``is_hardening``): the body deadline
  bookkeeping (``BodyDeadlines.receive`` with the standard-library calls it makes, and its periodic ``sweep``) and the
  body read with its limit checks (``_read_body``, counted whole although part of it is the read every server needs,
  so the share is an upper bound).
  The other checks are single comparisons inside functions every request runs (Content-Length against the limit, the
  type checks of names and datatypes); they are not told apart from those functions' own work.
* **Large bodies:** a fresh server of each kind under wrk's batch-1 traffic (concurrency 1) while eight clients
  keep sending large JSON bodies: 60 MB bodies (within the old 64 MiB default limit, refused as a wrong shape),
  and the largest request the model accepts (1024 rows). Reported: the batch-1 traffic's p99 and requests per
  second, the large bodies answered, and the server's peak resident memory (VmHWM).

Writes ``benchmarks/results/hardening.json``. Needs wrk and git. About 4 minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from tqdm import tqdm

from benchmarks import serve_speed
from benchmarks.common import write_results
from benchmarks.serve_speed import HOST, INFER, Scenario

ROOT = Path(__file__).resolve().parents[1]
WORK = serve_speed.WORK.parent / "hardening"
BASELINE = "ee7a80e"  # the last commit before the hardening
PACKAGES = {"lutnet": "lutnet", "service": "lutnet/service", "training": "lutnet/training", "export": "lutnet/export"}  # folder -> module path
SENDERS = 8
Pins = tuple[list[str], list[str]]  # taskset prefixes of the servers and of wrk
Body = tuple[Path, dict[str, str]]  # a body file for wrk and its headers


def baseline_tree(ref: str, destination: Path) -> Path:
    """``ref``'s packages laid out as the installed namespace, for ``PYTHONPATH`` (it wins over the editable install)."""
    shutil.rmtree(destination, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *PACKAGES], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(destination / "src", filter="data")
    for folder, module in PACKAGES.items():
        shutil.copytree(destination / "src" / folder, destination / "tree" / module, dirs_exist_ok=True)
    return destination / "tree"


@contextmanager
def server(repository: Path, pin: list[str], pythonpath: Path | None, log: Path) -> Iterator[tuple[int, int]]:
    """``lutnet serve`` with its defaults (``pythonpath``'s sources when given); yields (port, pid); stopped by its PID."""
    port = serve_speed.free_port()
    environment = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    command = [*pin, sys.executable, "-m", "lutnet", "serve", "--repository", str(repository), "--host", HOST, "--port", str(port), "--log-level", "warning"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=WORK)
    try:
        serve_speed.wait_ready(process, port, "/v2/health/ready")
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MB."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def large_bodies() -> dict[str, bytes]:
    """60 MB of JSON numbers in a one-row tensor (a wrong shape: refused), and the model's largest request (1024 rows)."""
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, 60_000_000 // 20)
    wrong = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": values.tolist()}]}
    rows = rng.uniform(0, 16, (1024, 64))
    largest = {"inputs": [{"name": "input", "shape": [1024, 64], "datatype": "FP32", "data": rows.ravel().tolist()}]}
    return {"60MB_wrong_shape": orjson.dumps(wrong), "largest_allowed_1024_rows": orjson.dumps(largest)}


def send_repeatedly(port: int, body: bytes, stop: threading.Event, answers: list[int]) -> None:
    """POST ``body`` on fresh connections until ``stop``; records each status (0: no answer could be read)."""
    head = f"POST {INFER} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    while not stop.is_set():
        with socket.create_connection((HOST, port), timeout=60) as connection:
            try:
                connection.sendall(head + body)
                reply = connection.recv(64)
            except OSError:  # the server hung up before taking the whole body
                reply = b""
        answers.append(int(reply.split()[1]) if reply.startswith(b"HTTP/1.1 ") else 0)


def under_large_bodies(port: int, pid: int, body: bytes, pin: list[str], batch1: tuple[Path, dict[str, str]], duration_s: int) -> dict[str, Any]:
    """wrk's batch-1 traffic while SENDERS clients send ``body`` over and over; the server's peak memory afterwards."""
    stop, answers = threading.Event(), []
    senders = [threading.Thread(target=send_repeatedly, args=(port, body, stop, answers)) for _ in range(SENDERS)]
    for sender in senders:
        sender.start()
    try:
        traffic = serve_speed.run_wrk(pin, (port, pid), Scenario("batch1", "lutnet", INFER, "json_b1", 1), *batch1, duration_s)
    finally:
        stop.set()
        for sender in senders:
            sender.join()
    statuses = {str(status): answers.count(status) for status in sorted(set(answers))}
    return {"batch1": traffic, "large_body_answers": statuses, "peak_rss_mb": peak_rss_mb(pid)}


def speed(repository: Path, trees: dict[str, Path | None], pins: Pins, batch1: Body, args: Any) -> dict[str, Any]:
    """Batch-1 requests per second of both servers at concurrency 1 and 64, rounds interleaved."""
    server_pin, client_pin = pins
    scenarios = [Scenario(f"c{c}", "lutnet", INFER, "json_b1", c) for c in (1, 64)]
    runs: dict[str, list[dict[str, Any]]] = {f"{name}_{s.name}": [] for name in trees for s in scenarios}
    before, after = (server(repository, server_pin, trees[name], WORK / f"{name}.log") for name in ("before", "after"))
    with before as before_server, after as after_server:
        servers = {"before": before_server, "after": after_server}
        for scenario in scenarios:
            for name in trees:
                serve_speed.run_wrk(client_pin, servers[name], scenario, *batch1, 1)
        with tqdm(total=args.repeats * len(runs), desc="hardening speed") as progress:
            for _ in range(args.repeats):
                for scenario in scenarios:
                    for name in trees:
                        runs[f"{name}_{scenario.name}"].append(serve_speed.run_wrk(client_pin, servers[name], scenario, *batch1, args.duration))
                        progress.update()
    medians = {name: serve_speed.medians(values) for name, values in runs.items()}
    rps = {name: values["requests_per_second"] for name, values in medians.items()}
    cpu = {name: values["server_cpu_us_per_request"] for name, values in medians.items()}
    ratios = {f"after_vs_before_{s.name}": rps[f"after_{s.name}"] / rps[f"before_{s.name}"] for s in scenarios}
    # Server CPU time per request: less swayed than requests per second by other jobs on a shared machine.
    ratios |= {f"cpu_per_request_after_vs_before_{s.name}": cpu[f"after_{s.name}"] / cpu[f"before_{s.name}"] for s in scenarios}
    return {"medians": medians, "ratios": ratios, "runs": runs}


HARDENING_SOURCE = "service/fastpath.py"
HARDENING_FRAMES = {"BodyDeadlines.receive", "BodyDeadlines.sweep", "InferenceRoutes._read_body", "too_large"}  # in HARDENING_SOURCE
OWN_WORK = ("service/", "uvicorn/")  # frames of the server's own work; under a hardening frame, the awaited body read
TARGET_SHARE = 0.03  # at most this share of the server's CPU samples


def is_hardening(stack: str) -> bool:
    """Whether a sampled stack is in hardening code on the request path (see the module docstring): its innermost
    hardening frame has only standard-library frames inside it (``asyncio.current_task``, ``time.monotonic``), not the
    server's body read or other service code."""
    frames = [frame.rpartition(" (") for frame in stack.split(";")]
    inside = [i for i, (function, _, where) in enumerate(frames) if function in HARDENING_FRAMES and where.startswith(HARDENING_SOURCE)]
    return bool(inside) and not any(where.startswith(OWN_WORK) for _, _, where in frames[inside[-1] + 1 :])


def profile(repository: Path, pins: Pins, batch1: Body, seconds: int) -> dict[str, Any]:
    """Per concurrency, the share of this checkout's server CPU samples (py-spy, 500 Hz, idle excluded) in the hardening."""
    server_pin, client_pin = pins
    shares: dict[str, Any] = {}
    with server(repository, server_pin, None, WORK / "profile.log") as running:
        serve_speed.run_wrk(client_pin, running, Scenario("warm_up", "lutnet", INFER, "json_b1", 64), *batch1, 1)
        for concurrency in (1, 64):
            scenario = Scenario(f"profile_c{concurrency}", "lutnet", INFER, "json_b1", concurrency)
            samples = serve_speed.sampled_stacks(running, client_pin, scenario, *batch1, seconds)
            total, inside = sum(n for _, n in samples), sum(n for stack, n in samples if is_hardening(stack))
            shares[f"c{concurrency}"] = {"samples": total, "hardening_samples": inside, "hardening_share": inside / total if total else None}
    shares["target_share"] = TARGET_SHARE
    shares["target_met"] = {f"c{c}": shares[f"c{c}"]["hardening_share"] is not None and shares[f"c{c}"]["hardening_share"] <= TARGET_SHARE
                            for c in (1, 64)}
    return shares


def amplification(repository: Path, trees: dict[str, Path | None], pins: Pins, batch1: Body, args: Any) -> dict[str, Any]:
    """Each large body against a fresh server of each kind, and a quiet run of each for the baseline p99 and memory."""
    server_pin, client_pin = pins
    results: dict[str, dict[str, Any]] = {}
    for load, body in {"quiet": b"", **large_bodies()}.items():
        for name, tree in trees.items():
            with server(repository, server_pin, tree, WORK / f"{name}.log") as (port, pid):
                if body:
                    results[f"{name}_{load}"] = under_large_bodies(port, pid, body, client_pin, batch1, args.duration)
                else:
                    traffic = serve_speed.run_wrk(client_pin, (port, pid), Scenario("batch1", "lutnet", INFER, "json_b1", 1), *batch1, args.duration)
                    results[f"{name}_{load}"] = {"batch1": traffic, "peak_rss_mb": peak_rss_mb(pid)}
            measured = results[f"{name}_{load}"]
            print(f"{name:6s} {load:26s} batch-1 p99 {measured['batch1']['p99_ms']:8.2f} ms  peak RSS {measured['peak_rss_mb']:7.0f} MB")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hardening", description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"git ref of the server before the hardening (default {BASELINE})")
    parser.add_argument("--duration", type=int, default=3, help="seconds of load per run (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the speed comparison; medians are reported (default 5)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of this checkout's server")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.hardening: error: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    for folder in (WORK, serve_speed.WORK):  # run_wrk writes its scripts to serve_speed's folder
        folder.mkdir(parents=True, exist_ok=True)
    repository = serve_speed.export_digits(WORK / "digits")
    batch1 = serve_speed.bodies(WORK)["json_b1"]
    trees = {"before": baseline_tree(args.baseline, WORK / "baseline"), "after": None}
    pins = serve_speed.cores()
    load_before = os.getloadavg()
    measured = {"speed": speed(repository, trees, pins, batch1, args)}
    if serve_speed.py_spy() and not args.no_profile:
        measured["profile"] = profile(repository, pins, batch1, 4 * args.duration)
    measured["large_bodies"] = amplification(repository, trees, pins, batch1, args)
    setup = {
        "baseline": args.baseline,
        "baseline_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.baseline], capture_output=True, text=True).stdout.strip(),
        "servers": "lutnet serve with its defaults, one worker, pinned to one core; wrk on another",
        "senders": SENDERS,
        "duration_s": args.duration,
        "repeats": args.repeats,
        "load_average_before_after": [load_before, os.getloadavg()],
    }
    path = write_results("hardening", {"setup": setup, **measured})
    for name, value in measured["speed"]["ratios"].items():
        print(f"{name}: {value:.3f}")
    for concurrency in (1, 64) if "profile" in measured else ():
        print(f"hardening share of the server's CPU samples, c={concurrency}: {measured['profile'][f'c{concurrency}']['hardening_share']:.2%}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
