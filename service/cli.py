"""``lutnet serve``: check the repository, print a working curl example per model, run uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import uvicorn
from pydantic import ValidationError

from lutnet.errors import LutnetError
from lutnet.service.metrics import ServiceMetrics
from lutnet.service.repository import ModelRegistry
from lutnet.service.runtime import LoadedModel
from lutnet.service.settings import Settings

# flag -> setting; flags left out keep the environment's value (LUTNET_*) or the default.
FLAGS = {
    "repository": "repository",
    "host": "host",
    "port": "port",
    "workers": "workers",
    "poll": "poll_seconds",
    "threads": "intra_op_threads",
    "execution": "execution",
    "inline_below_us": "inline_below_us",
    "batching": "batching",
    "max_batch_size": "max_batch_size",
    "max_queue_delay_us": "max_queue_delay_us",
    "max_queue_size": "max_queue_size",
    "max_request_bytes": "max_request_bytes",
    "request_timeout": "request_timeout_s",
    "body_timeout": "body_timeout_s",
    "allow_nonfinite": "allow_nonfinite",
    "shutdown_grace": "shutdown_grace_s",
    "log_level": "log_level",
    "access_log": "access_log",
    "range_monitor": "range_monitor",
    "saturation_sample_rate": "saturation_sample_rate",
    "saturation_window": "saturation_window",
    "saturation_warning": "saturation_warning",
    "dashboard": "dashboard",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lutnet serve",
        description="Serve every model of a Triton-layout repository (DIR/<model>/<version>/model.onnx) over HTTP: "
        "Open Inference Protocol v2 under /v2, a simple /v1/models/<model>:predict, Prometheus /metrics, docs at /docs. "
        "Each flag can also be set by the environment variable in brackets (the flag wins); LUTNET_API_TOKEN guards load/unload.",
    )

    def add(flag: str, **options: object) -> None:
        setting = FLAGS[flag.removeprefix("--").replace("-", "_")]
        options["help"] = f"{options['help']} [LUTNET_{setting.upper()}]"
        parser.add_argument(flag, **options)  # type: ignore[arg-type]

    add("--repository", type=Path, help="model repository directory")
    add("--host", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, help="port (default 8000)")
    add("--workers", type=int, help="server processes (default 1)")
    add("--poll", type=float, metavar="SECONDS", help="rescan the repository this often and hot-reload changed models (default 0: never)")
    add("--threads", type=int, help="onnxruntime intra-op threads per session (default 1)")
    add(
        "--execution",
        choices=["auto", "inline", "thread"],
        help="where onnxruntime runs: auto (default) on the event loop for a request that finds the model idle and is predicted "
        "under --inline-below-us, else (larger calls, merged batches) in a worker thread; inline always on the loop; thread always "
        "in a worker thread",
    )
    add(
        "--inline-below-us",
        type=float,
        metavar="US",
        help="with --execution auto, a request that finds the model idle and is predicted to compute in under this runs on the loop (default 100)",
    )
    add("--batching", action=argparse.BooleanOptionalAction, help="merge concurrent requests into one onnxruntime call (default on)")
    add("--max-batch-size", type=int, help="most rows per request and per merged batch (default 1024, or the model's config.pbtxt)")
    add("--max-queue-delay-us", type=int, help="how long a request waits for others to join its batch (default 0)")
    add("--max-queue-size", type=int, help="most requests waiting per model; more get 503 (default 1024)")
    add(
        "--max-request-bytes",
        type=int,
        help="largest request body; larger get 413 (default: what the loaded models accept, their max batch size of inputs at "
        "32 bytes per value plus 64 KiB)",
    )
    add("--request-timeout", type=float, metavar="SECONDS", help="answer 503 for a request queued longer than this (default 30)")
    add(
        "--body-timeout",
        type=float,
        metavar="SECONDS",
        help="answer 408 and close the connection when a request body has not all arrived this long after reading began (default 30)",
    )
    add("--allow-nonfinite", action=argparse.BooleanOptionalAction, help="accept NaN and Inf in inputs (default: reject with 400)")
    add("--shutdown-grace", type=float, metavar="SECONDS", help="after SIGTERM, time for in-flight requests to finish (default 10)")
    add("--log-level", choices=["critical", "error", "warning", "info", "debug"], help="log level (default info)")
    add("--access-log", action=argparse.BooleanOptionalAction, help="log every request (default off: it costs throughput)")
    add("--range-monitor", action=argparse.BooleanOptionalAction, help="count input rows outside the model card's training range (default on)")
    add("--saturation-sample-rate", type=float, metavar="RATE", help="share of requests that also measure LUT table saturation (default 0.01; 0: off)")
    add("--saturation-window", type=int, metavar="N", help="recent sampled requests per saturation ratio (default 64)")
    add("--saturation-warning", type=float, metavar="RATIO",
        help="log a warning when a LUT layer's saturation rises this far above its level on the export data (default 0.1)")
    add("--dashboard", action=argparse.BooleanOptionalAction, help="serve the read-only dashboard at /dashboard (default on)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the given flags on top; invalid values are one clear error."""
    given = {FLAGS[flag]: value for flag, value in vars(args).items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise LutnetError(f"invalid settings ({problems})") from None


def check_repository(settings: Settings) -> list[LoadedModel]:
    """Load every model once, as the server will, and return the default versions; a repository with none is an error."""
    if settings.repository is None:
        raise LutnetError("model repository", expected="--repository DIR or LUTNET_REPOSITORY", got="none")
    if not settings.repository.is_dir():
        raise LutnetError("model repository", expected="a directory DIR/<model>/<version>/model.onnx", got=f"{settings.repository} does not exist")
    registry = ModelRegistry(settings.repository, settings, ServiceMetrics(1))

    async def load() -> tuple[list[LoadedModel], list[str]]:
        failures = await registry.start()
        await registry.close()
        return registry.defaults(), failures

    models, failures = asyncio.run(load())
    if not models:
        got = "; ".join(failures) if failures else f"no <model>/<version>/model.onnx under {settings.repository}"
        raise LutnetError("model repository", expected="at least one model that loads (export one with: lutnet export CHECKPOINT --repository DIR)", got=got)
    return models


def curl_example(model: LoadedModel, host: str, port: int) -> str:
    """A curl command that works against this model: one row of zeros of the right width."""
    address = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
    width = math.prod(max(d, 1) for d in model.primary_input.row_shape)
    body = orjson.dumps({"instances": [[0] * width]}).decode()
    return f"curl -s {address}:{port}/v1/models/{model.name}:predict -d '{body}'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit status."""
    settings = settings_from(build_parser().parse_args(argv))
    models = check_repository(settings)
    print(f"lutnet serve: {len(models)} model(s) from {settings.repository} on http://{settings.host}:{settings.port} (docs at /docs)")
    for model in models:
        print(f"  {model.name} v{model.version}:  {curl_example(model, settings.host, settings.port)}")
    with worker_metrics(settings) as settings:
        run(settings)
    return 0


@contextlib.contextmanager
def worker_metrics(settings: Settings) -> Iterator[Settings]:
    """Settings with a fresh ``metrics_dir`` for several workers (removed afterwards), so every scrape covers all of them."""
    if settings.workers == 1 or settings.metrics_dir is not None:
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="lutnet-metrics-") as folder:
        yield settings.model_copy(update={"metrics_dir": Path(folder)})


def run(settings: Settings) -> None:
    """uvicorn with the app of ``settings``, until SIGINT/SIGTERM."""
    # Worker processes rebuild the settings from the environment, so the flags travel there.
    os.environ.update(settings.to_environment())
    uvicorn.run(
        "lutnet.service.app:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
        server_header=False,
        # X-Forwarded-* only change the client address the access log shows; without that log they are not read.
        proxy_headers=settings.access_log,
    )
