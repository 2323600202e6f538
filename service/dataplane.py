"""The plain runtime object behind the HTTP routes: health, metadata, inference, statistics and repository control.

Routes only move bytes in and out; everything the protocol means happens here, so the same object
serves any transport and is tested without HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from lutnet import __version__
from lutnet.service.batching import BatchResult
from lutnet.service.metrics import ServiceMetrics
from lutnet.service.protocol import decode_infer_request, decode_instances, encode_infer_response, encode_predictions
from lutnet.service.repository import ModelRegistry
from lutnet.service.runtime import LoadedModel
from lutnet.service.settings import Settings

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]
# Requests with more JSON text than this are decoded in a worker thread: parsing it would otherwise hold the event
# loop, and every other client, for a noticeable time. Binary tensor data after a JSON header costs next to nothing
# to decode (a view of the body), so only the JSON part counts.
THREAD_DECODE_BYTES = 64 * 1024


def json_bytes(body: bytes, header_length: str | None) -> int:
    """How much of ``body`` is JSON text: the binary extension's header length where it names one, else all of it."""
    if header_length is not None and header_length.isdigit():
        return min(int(header_length), len(body))
    return len(body)
Reply = TypeVar("Reply")


@dataclass(slots=True)
class InferReply:
    """A v2 response body; ``header_length`` is set when binary outputs follow the JSON header."""

    body: bytes
    header_length: int | None


class DataPlane:
    """What the server does, independent of HTTP."""

    def __init__(self, settings: Settings, registry: ModelRegistry, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.started = False
        self.draining = False
        self._allow_nonfinite = settings.allow_nonfinite

    def ready(self) -> bool:
        """Ready for traffic: models loaded and not shutting down."""
        return self.started and not self.draining

    def begin_shutdown(self) -> None:
        """Readiness turns false at once; requests in flight keep running."""
        self.draining = True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "lutnet", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.registry.get(name, version)
        versions = [str(v) for v in self.registry.versions(name)] if version is None else [str(model.version)]
        return {**model.describe(), "versions": versions}

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether the model (version) is loaded; 404 when it is unknown."""
        self.registry.get(name, version)
        return not self.draining

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        return self.registry.get(name, version).config()

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """The statistics extension's answer for every model, one model's versions, or one version."""
        if name is None:
            models = self.registry.loaded()
        elif version is None:
            models = [self.registry.get(name, str(v)) for v in self.registry.versions(name)]
        else:
            models = [self.registry.get(name, version)]
        every_worker = self.metrics.view()
        return {"model_stats": [every_worker[model.name, model.version].to_triton() for model in sorted(models, key=lambda m: (m.name, m.version))]}

    async def infer(self, name: str, version: str | None, body: bytes, header_length: str | None) -> InferReply:
        """A v2 infer request from body bytes (JSON, or JSON header + binary tensors) to response bytes."""
        model = self.registry.get(name, version)
        request = None

        def decode() -> tuple[dict[str, np.ndarray], int]:
            nonlocal request
            request = decode_infer_request(
                body, header_length, model.inputs, model.outputs, max_batch_size=model.max_batch_size, allow_nonfinite=self._allow_nonfinite
            )
            return request.inputs, request.rows

        def encode(result: BatchResult) -> InferReply:
            outputs = request.selected_outputs(model.output_names, result.outputs)
            return InferReply(*encode_infer_response(model.name, model.version, request.id, outputs))

        return await self._serve(model, decode, encode, json_bytes(body, header_length))

    async def predict(self, name: str, version: str | None, body: bytes) -> bytes:
        """A /v1 predict request ``{"instances": [...]}`` to labels and probabilities, or values."""
        model = self.registry.get(name, version)
        spec, output = model.primary_input, model.output_names.index(model.primary_output.name)

        def decode() -> tuple[dict[str, np.ndarray], int]:
            rows = decode_instances(body, spec, max_batch_size=model.max_batch_size, allow_nonfinite=self._allow_nonfinite)
            return {spec.name: rows}, len(rows)

        def encode(result: BatchResult) -> bytes:
            return encode_predictions(model.name, model.version, result.outputs[output], model.card.task, model.card.labels)

        return await self._serve(model, decode, encode, len(body))

    async def _serve(
        self, model: LoadedModel, decode: Callable[[], tuple[dict[str, np.ndarray], int]], encode: Callable[[BatchResult], Reply], size: int
    ) -> Reply:
        """Decode (a body of ``size`` bytes; a large one in a worker thread), run (through the model's queue if it batches),
        encode; every outcome is counted."""
        started = time.perf_counter_ns()
        try:
            inputs, rows = decode() if size <= THREAD_DECODE_BYTES else await asyncio.to_thread(decode)
            decoded = time.perf_counter_ns()
            result = await model.infer(inputs, rows)
            computed = time.perf_counter_ns()
            reply = encode(result)
        except Exception as exc:
            model.stats.record_failure(total_ns=time.perf_counter_ns() - started, status_code=getattr(exc, "status_code", 500))
            raise
        finished = time.perf_counter_ns()
        # Counted in the event loop's next pass: the route writes the response in this one, so the client does not
        # wait for the bookkeeping (at concurrency 1 that is several percent of a batch-1 request's time).
        # One callback for both the statistics and the monitor: at high concurrency the loop's per-callback cost shows.
        asyncio.get_running_loop().call_soon(_count, model, finished - started, decoded - started, result.queue_ns, result.compute_ns,
                                             finished - computed, rows, inputs)
        return reply

    async def repository_index(self, ready_only: bool) -> list[dict[str, Any]]:
        entries = await self.registry.index()
        return [entry for entry in entries if entry["state"] == "READY"] if ready_only else entries

    async def load(self, name: str) -> None:
        await self.registry.load(name)

    async def unload(self, name: str) -> None:
        await self.registry.unload(name)


def _count(model: Any, total_ns: int, decode_ns: int, queue_ns: int, compute_ns: int, encode_ns: int, rows: int, inputs: dict[str, Any]) -> None:
    """After the response: a request's latency statistics and, where the model is watched, its monitor."""
    model.stats.record_success(total_ns, decode_ns, queue_ns, compute_ns, encode_ns, rows)
    if model.monitor is not None:
        model.monitor.observe(inputs, rows)
