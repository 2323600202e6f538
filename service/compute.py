"""Threads that run onnxruntime off the event loop, fed straight from the loop with the least overhead per call.

``loop.run_in_executor`` costs several Python objects and callbacks per call (a work item, a
``concurrent.futures.Future`` chained to an asyncio one); for a small model that hand-off is a large
part of a request (benchmarks/RESULTS.md, serving). Here a call is one tuple on a ``SimpleQueue`` and one
``call_soon_threadsafe`` back to the loop that resolves the asyncio future.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

Result = TypeVar("Result")
# One call: the function, its argument, and the loop and future its outcome goes back to; None stops a thread.
Call = tuple[Callable[[Any], Any], Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class ComputeThreads:
    """A fixed set of worker threads running one-argument calls for coroutines on an event loop."""

    def __init__(self, count: int, name: str) -> None:
        self._calls: SimpleQueue[Call | None] = SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    def call(self, function: Callable[[Any], Result], argument: Any) -> asyncio.Future[Result]:
        """``function(argument)`` in a worker thread; the future (of the running loop) gets its result or exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._calls.put((function, argument, loop, future))
        return future

    def shutdown(self) -> None:
        """Let the calls already queued finish, then stop and join every thread."""
        for _ in self._threads:
            self._calls.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            function, argument, loop, future = call
            try:
                outcome, failed = function(argument), False
            except BaseException as exc:  # handed to the awaiting coroutine, which raises it there
                outcome, failed = exc, True
            try:
                loop.call_soon_threadsafe(_settle, future, outcome, failed)
            except RuntimeError:  # the loop closed while this call ran: nobody awaits it any more
                pass


def _settle(future: asyncio.Future[Any], outcome: Any, failed: bool) -> None:
    """On the loop: hand the outcome to the future unless its awaiting coroutine was cancelled meanwhile."""
    if future.done():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
