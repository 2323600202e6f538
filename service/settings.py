"""Settings of the server: environment variables with the ``LUTNET_`` prefix, overridden by CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of ``lutnet serve``; each is also ``LUTNET_<NAME>`` in the environment.

    Settings given explicitly (flag or environment) win over a model's ``config.pbtxt``; defaults do not.
    """

    model_config = SettingsConfigDict(env_prefix="LUTNET_", extra="forbid")

    repository: Path | None = Field(None, description="Model repository: DIR/<model>/<version>/model.onnx (+ DIR/<model>/config.pbtxt).")
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 exposes the server to the network.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    workers: int = Field(1, ge=1, description="Server processes; each loads every model and has its own queues and statistics.")
    intra_op_threads: int = Field(1, ge=0, description="onnxruntime threads inside one operator, per session (0: one per core).")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field("all", description="onnxruntime graph optimization level.")
    allow_spinning: bool = Field(False, description="Let onnxruntime threads spin between operators (lower latency, burns idle CPU).")
    execution: Literal["auto", "inline", "thread"] = Field(
        "auto",
        description="Where onnxruntime runs: 'auto' (the default) runs a call on the event loop when it serves a request that found "
        "the model idle and the model's warm-up predicts it computes in under inline_below_us, and in a worker thread otherwise "
        "(larger calls, and merged batches of requests that queued); 'thread' always hands calls to a worker thread (the loop keeps "
        "reading requests meanwhile); 'inline' always runs them on the loop. See benchmarks/serve_speed.py.",
    )
    inline_below_us: float = Field(
        100.0,
        ge=0,
        description="With execution 'auto': a request that finds the model idle and is predicted to compute in less than this many "
        "microseconds runs on the event loop (handing a call to a thread and back costs CPU of its own); longer ones, and merged "
        "batches, run in a worker thread.",
    )
    batching: bool = Field(
        True,
        description="Merge concurrent requests of a model into one onnxruntime call. On by default: it serves more requests at high "
        "concurrency, and a lone request to an idle model runs at once (benchmarks/RESULTS.md, serving).",
    )
    max_batch_size: int = Field(1024, ge=1, description="Most rows in one request and in one merged batch.")
    max_queue_delay_us: int = Field(0, ge=0, description="How long a request may wait for others to join its batch, in microseconds.")
    max_queue_size: int = Field(1024, ge=1, description="Most requests waiting in one model's batching queue; more are answered 503.")
    max_request_bytes: int | None = Field(
        None,
        ge=1,
        description="Largest request body accepted; larger ones are answered 413. By default what the loaded models can accept: the "
        "largest max batch size of any model times its input values, 32 bytes per value (a number as JSON text) plus 64 KiB, "
        "or 64 MiB for a model with free dimensions besides the batch (lutnet.service.limits).",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request whose whole body has not arrived this many seconds after the server began reading it is answered 408 "
        "and its connection closed (checked every quarter of this time).",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="A request still waiting in a batching queue after this many seconds is answered 503.")
    allow_nonfinite: bool = Field(False, description="Accept NaN and Inf in input tensors (rejected with 400 by default).")
    api_token: SecretStr | None = Field(None, description="When set, repository load/unload need 'Authorization: Bearer <token>'.")
    poll_seconds: float = Field(0.0, ge=0, description="Rescan the repository this often and hot-reload changed models (0: never).")
    shutdown_grace_s: float = Field(10.0, ge=0, description="After SIGTERM, how long in-flight requests may take to finish.")
    stats_window: int = Field(4096, ge=1, description="Recent requests per model over which p50/p95/p99 latencies are computed.")
    stats_log_s: float = Field(60.0, ge=0, description="Log each model's recent latency percentiles this often (0: never).")
    range_monitor: bool = Field(
        True,
        description="Count, per model version, the rows with input features outside the training range in the model card "
        "(the statistics route, /metrics and /dashboard show them; models without a range show none).",
    )
    saturation_sample_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of requests (every round(1/rate)-th) whose first rows also run through the model's monitor graph "
        "(monitor.onnx beside model.onnx) to measure each LUT layer's table saturation; 0 turns it off.",
    )
    saturation_window: int = Field(64, ge=1, description="Recent sampled requests over which each LUT layer's saturation ratio is computed.")
    saturation_warning: float = Field(
        0.1, ge=0, le=1, description="Log a warning when a LUT layer's saturation ratio rises this far above its level on the data "
        "the model was exported with (the model card's lut_saturation_baseline; 0 for models without one)."
    )
    dashboard: bool = Field(
        True, description="Serve the read-only dashboard at /dashboard and its data route; it shows what /metrics and the statistics routes show."
    )
    metrics_dir: Path | None = Field(
        None,
        description="Folder where each worker process publishes its counts so that /metrics and the statistics routes cover every "
        "worker; lutnet serve makes a fresh one for --workers above 1 when this is unset.",
    )
    access_log: bool = Field(False, description="Log every request (costs throughput).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Log level of the server.")

    def explicit(self, name: str) -> bool:
        """Whether ``name`` was given by a flag or the environment rather than left at its default."""
        return name in self.model_fields_set

    def to_environment(self) -> dict[str, str]:
        """The explicitly given settings as ``LUTNET_*`` variables, so worker processes rebuild the same settings."""
        env = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is None:
                continue
            value = value.get_secret_value() if isinstance(value, SecretStr) else value
            env[f"LUTNET_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env
