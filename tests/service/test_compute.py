"""ComputeThreads: calls run off the event loop, results and exceptions come back to the awaiting coroutine, shutdown drains."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lutnet.service.compute import ComputeThreads


def test_calls_run_in_worker_threads_and_return_their_results() -> None:
    threads = ComputeThreads(2, "test")

    async def main() -> list[tuple[int, str]]:
        return await asyncio.gather(*(threads.call(lambda x: (x * x, threading.current_thread().name), i) for i in range(20)))

    try:
        results = asyncio.run(main())
    finally:
        threads.shutdown()
    assert [value for value, _ in results] == [i * i for i in range(20)]
    assert {name for _, name in results} <= {"test_0", "test_1"}


def test_an_exception_is_raised_in_the_awaiting_coroutine() -> None:
    threads = ComputeThreads(1, "test")

    async def main() -> None:
        await threads.call(lambda x: 1 / x, 0)

    try:
        with pytest.raises(ZeroDivisionError):
            asyncio.run(main())
    finally:
        threads.shutdown()


def test_the_loop_keeps_running_while_a_call_computes_and_a_cancelled_call_is_dropped() -> None:
    threads = ComputeThreads(1, "test")
    release = threading.Event()

    async def main() -> tuple[int, int]:
        slow = threads.call(lambda _: release.wait(5) and 1, None)
        ticks = 0
        while ticks < 10:  # the loop is free: it ticks while the thread blocks
            await asyncio.sleep(0)
            ticks += 1
        slow.cancel()
        release.set()
        after = await threads.call(lambda x: x + 1, 1)  # the cancelled call's outcome was dropped without an error
        return ticks, after

    try:
        assert asyncio.run(main()) == (10, 2)
    finally:
        threads.shutdown()


def test_shutdown_finishes_queued_calls_and_stops_every_thread() -> None:
    threads = ComputeThreads(2, "test")
    done: list[int] = []

    def record(i: int) -> None:
        time.sleep(0.01)
        done.append(i)

    async def main() -> None:
        for i in range(6):
            threads.call(record, i)

    asyncio.run(main())
    threads.shutdown()
    assert sorted(done) == list(range(6))
    assert not any(thread.name.startswith("test_") for thread in threading.enumerate())
