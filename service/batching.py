"""Dynamic batching: concurrent requests to one model version queue and are merged into one onnxruntime call."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from lutnet.service.errors import Unavailable

# Runs one call: input arrays by name, and whether it serves one request that found the model idle (``alone``: no
# other request waits on it) -> (output arrays, nanoseconds spent computing), returned at once when it ran on the
# event loop, or as an awaitable when it runs elsewhere.
Computed = tuple[list[np.ndarray], int]
Execute = Callable[[dict[str, np.ndarray], bool], Computed | Awaitable[Computed]]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is slower, and this one is built per request
class BatchResult:
    """One request's slice of a merged batch, with the time it waited and the time its batch computed."""

    outputs: list[np.ndarray]
    queue_ns: int
    compute_ns: int
    batch_rows: int


@dataclass(slots=True)
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[BatchResult]
    enqueued_ns: int


class MicroBatcher:
    """Queue of one model version: merges requests up to ``max_batch_size`` rows or ``max_delay_us`` of waiting.

    One worker task takes whole requests in arrival order, concatenates their inputs along the batch
    axis, runs them once and hands each request its own rows, so results equal unbatched ones.

    With ``run_when_idle`` and no queue delay, a lone request (no other request to this queue in flight,
    and none ran alone earlier in this pass of the event loop) runs at once without the hop through the
    worker; requests that arrive while others are in flight queue and are merged into the next call. ``execute``
    learns which of the two a call is, so it can keep queued work off the event loop.
    """

    def __init__(
        self,
        execute: Execute,
        *,
        label: str,
        max_batch_size: int,
        max_delay_us: int,
        max_queue_size: int,
        timeout_s: float,
        run_when_idle: bool = False,
    ) -> None:
        self._execute = execute
        self._run_when_idle = run_when_idle and max_delay_us == 0
        self._busy = False
        self._in_flight = 0  # submitted requests not yet answered
        self._claimed = False  # a lone request ran in this pass of the event loop
        self._label = label
        self._max_batch_size = max_batch_size
        self._max_delay_ns = max_delay_us * 1000
        self._max_queue_size = max_queue_size
        self._timeout_ns = int(timeout_s * 1e9)
        self._pending: deque[_Pending] = deque()
        self._queued_rows = 0
        self._arrived = asyncio.Event()
        self._closed = False
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher {self._label}")

    async def submit(self, inputs: dict[str, np.ndarray], rows: int) -> BatchResult:
        """Queue one request of ``rows`` rows and wait for its slice of a batch; 503 when the queue is full or closed."""
        if self._closed:
            raise Unavailable(f"model {self._label} is shutting down; retry")
        if len(self._pending) >= self._max_queue_size:
            raise Unavailable(f"batching queue of model {self._label}", expected=f"at most {self._max_queue_size} waiting requests", got="a full queue")
        self._in_flight += 1
        try:
            if self._run_when_idle and self._in_flight == 1 and not self._busy and not self._pending and not self._claimed:
                # Alone: run at once. Requests already read in this pass of the event loop (their tasks run right
                # after this one) must not each run alone too, so the claim holds until the next pass and they queue.
                self._claimed = True
                asyncio.get_running_loop().call_soon(self._release_claim)
                outputs, compute_ns = await self._computing(inputs, alone=True)
                return BatchResult(outputs, 0, compute_ns, rows)
            return await self._enqueue(inputs, rows)
        finally:
            self._in_flight -= 1

    def _release_claim(self) -> None:
        self._claimed = False

    async def _enqueue(self, inputs: dict[str, np.ndarray], rows: int) -> BatchResult:
        """Wait in the queue for a slice of a batch."""
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(inputs, rows, future, time.perf_counter_ns()))
        self._queued_rows += rows
        if len(self._pending) == 1 or self._queued_rows >= self._max_batch_size:
            self._arrived.set()
        return await future

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, stop the worker."""
        self._closed = True
        self._arrived.set()
        if self._worker is not None:
            await self._worker

    async def _computing(self, feeds: dict[str, np.ndarray], *, alone: bool) -> tuple[list[np.ndarray], int]:
        """``execute`` with the model marked busy, so requests arriving meanwhile queue; the worker is woken after if it has work."""
        self._busy = True
        try:
            result = self._execute(feeds, alone)
            return result if type(result) is tuple else await result  # type: ignore[misc]
        finally:
            self._busy = False
            if self._pending or self._closed:  # an idle worker needs no wake-up: that would cost a loop pass per request
                self._arrived.set()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending or not self._closed:
            if not self._pending or self._busy:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            wait_s = (self._pending[0].enqueued_ns + self._max_delay_ns - time.perf_counter_ns()) / 1e9
            if self._queued_rows < self._max_batch_size and wait_s > 0 and not self._closed:
                self._arrived.clear()
                timer = loop.call_later(wait_s, self._arrived.set)
                await self._arrived.wait()
                timer.cancel()
                continue
            await self._run(self._take())

    def _take(self) -> list[_Pending]:
        """Whole requests in arrival order up to ``max_batch_size`` rows; ones that waited too long are answered 503."""
        batch: list[_Pending] = []
        rows = 0
        now = time.perf_counter_ns()
        while self._pending and (not batch or rows + self._pending[0].rows <= self._max_batch_size):
            item = self._pending.popleft()
            self._queued_rows -= item.rows
            if now - item.enqueued_ns > self._timeout_ns:
                if not item.future.done():
                    item.future.set_exception(Unavailable(f"request to model {self._label} waited in the queue longer than {self._timeout_ns / 1e9:g} s"))
                continue
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        started_ns = time.perf_counter_ns()
        try:
            names = batch[0].inputs.keys()
            feeds = batch[0].inputs if len(batch) == 1 else {name: np.concatenate([item.inputs[name] for item in batch]) for name in names}
            outputs, compute_ns = await self._computing(feeds, alone=False)
        except Exception as exc:  # the whole batch failed together: every request in it gets the error, the worker goes on
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        total = sum(item.rows for item in batch)
        start = 0
        for item in batch:
            if not item.future.done():
                sliced = [output[start : start + item.rows] for output in outputs]
                item.future.set_result(BatchResult(sliced, started_ns - item.enqueued_ns, compute_ns, total))
            start += item.rows
