"""MicroBatcher: merged results equal unbatched ones; full queues, timeouts, shutdown and failures answer as documented."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lutnet.service.batching import MicroBatcher
from lutnet.service.errors import Unavailable


def recording_batcher(**options: int | float) -> tuple[MicroBatcher, list[int]]:
    """A batcher over a row-wise function (2x + 1) that records the rows of each call."""
    calls: list[int] = []

    async def execute(feeds: dict[str, np.ndarray], alone: bool) -> tuple[list[np.ndarray], int]:
        calls.append(len(feeds["x"]))
        return [feeds["x"] * 2 + 1], 1000

    defaults = {"max_batch_size": 8, "max_delay_us": 2000, "max_queue_size": 100, "timeout_s": 5.0} | options
    return MicroBatcher(execute, label="test v1", **defaults), calls  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 8), min_size=1, max_size=20), max_batch_size=st.integers(8, 20))
def test_merged_results_equal_unbatched_and_batches_respect_the_limit(sizes: list[int], max_batch_size: int) -> None:
    """For any mix of request sizes, each request gets exactly its own rows of f(x), and no call exceeds max_batch_size."""

    async def scenario() -> None:
        batcher, calls = recording_batcher(max_batch_size=max_batch_size)
        batcher.start()
        inputs = [np.arange(i * 100, i * 100 + n * 3, dtype=np.float32).reshape(n, 3) for i, n in enumerate(sizes)]
        results = await asyncio.gather(*(batcher.submit({"x": x}, len(x)) for x in inputs))
        for x, result in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(result.outputs[0], x * 2 + 1)
        assert sum(calls) == sum(sizes) and max(calls) <= max_batch_size
        assert len(calls) <= len(sizes)
        await batcher.close()

    asyncio.run(scenario())


def test_concurrent_requests_are_merged_into_fewer_calls() -> None:
    async def scenario() -> None:
        batcher, calls = recording_batcher(max_batch_size=16, max_delay_us=20_000)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit({"x": np.full((1, 3), i, np.float32)}, 1) for i in range(16)))
        assert calls == [16] and {r.batch_rows for r in results} == {16}
        assert all(r.queue_ns >= 0 and r.compute_ns == 1000 for r in results)
        await batcher.close()

    asyncio.run(scenario())


def test_full_queue_is_503() -> None:
    async def scenario() -> None:
        batcher, _ = recording_batcher(max_queue_size=2, max_delay_us=50_000)
        batcher.start()
        waiting = [asyncio.create_task(batcher.submit({"x": np.ones((1, 3), np.float32)}, 1)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="at most 2 waiting requests") as full:
            await batcher.submit({"x": np.ones((1, 3), np.float32)}, 1)
        assert full.value.status_code == 503
        await asyncio.gather(*waiting)
        await batcher.close()

    asyncio.run(scenario())


def test_request_waiting_longer_than_the_timeout_is_503() -> None:
    async def scenario() -> None:
        batcher, calls = recording_batcher(max_delay_us=30_000, timeout_s=0.005)
        batcher.start()
        with pytest.raises(Unavailable, match="waited in the queue longer than 0.005 s"):
            await batcher.submit({"x": np.ones((1, 3), np.float32)}, 1)
        assert calls == []
        await batcher.close()

    asyncio.run(scenario())


def test_close_finishes_queued_requests_then_refuses_new_ones() -> None:
    async def scenario() -> None:
        batcher, calls = recording_batcher(max_delay_us=10_000_000)
        batcher.start()
        queued = asyncio.create_task(batcher.submit({"x": np.ones((2, 3), np.float32)}, 2))
        await asyncio.sleep(0.01)
        await asyncio.wait_for(batcher.close(), timeout=1)
        np.testing.assert_array_equal((await queued).outputs[0], np.full((2, 3), 3.0))
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.submit({"x": np.ones((1, 3), np.float32)}, 1)

    asyncio.run(scenario())


def test_a_failed_call_fails_every_request_of_its_batch() -> None:
    async def execute(feeds: dict[str, np.ndarray], alone: bool) -> tuple[list[np.ndarray], int]:
        raise RuntimeError("onnxruntime exploded")

    async def scenario() -> None:
        batcher = MicroBatcher(execute, label="m v1", max_batch_size=8, max_delay_us=5000, max_queue_size=8, timeout_s=5)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit({"x": np.ones((1, 3))}, 1) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        await batcher.close()

    asyncio.run(scenario())


def test_an_idle_model_runs_at_once_and_merges_what_arrives_while_it_computes() -> None:
    calls: list[int] = []

    async def execute(feeds: dict[str, np.ndarray], alone: bool) -> tuple[list[np.ndarray], int]:
        calls.append(len(feeds["x"]))
        await asyncio.sleep(0.05)  # computing off the event loop
        return [feeds["x"] * 2 + 1], 1000

    async def scenario() -> None:
        batcher = MicroBatcher(execute, label="m v1", max_batch_size=8, max_delay_us=0, max_queue_size=8, timeout_s=5, run_when_idle=True)
        batcher.start()
        first = asyncio.create_task(batcher.submit({"x": np.zeros((1, 3))}, 1))
        await asyncio.sleep(0.01)
        later = [asyncio.create_task(batcher.submit({"x": np.full((1, 3), i)}, 1)) for i in range(1, 6)]
        assert (await first).queue_ns == 0 and calls[0] == 1
        results = await asyncio.gather(*later)
        assert calls == [1, 5] and {r.batch_rows for r in results} == {5}
        for i, result in enumerate(results, start=1):
            np.testing.assert_array_equal(result.outputs[0], np.full((1, 3), 2 * i + 1))
        await batcher.close()

    asyncio.run(scenario())


def test_execute_learns_which_call_serves_a_lone_request_and_which_a_queued_batch() -> None:
    calls: list[tuple[int, bool]] = []

    def execute(feeds: dict[str, np.ndarray], alone: bool) -> tuple[list[np.ndarray], int]:
        calls.append((len(feeds["x"]), alone))
        return [feeds["x"] * 2 + 1], 1000

    async def scenario() -> None:
        batcher = MicroBatcher(execute, label="m v1", max_batch_size=8, max_delay_us=0, max_queue_size=8, timeout_s=5, run_when_idle=True)
        batcher.start()
        await asyncio.gather(*(batcher.submit({"x": np.full((1, 3), i)}, 1) for i in range(4)))
        assert calls == [(1, True), (3, False)]  # the first ran alone; the three that queued behind it were merged
        await batcher.close()

    asyncio.run(scenario())


def test_a_burst_read_in_one_pass_runs_one_request_alone_and_merges_the_rest_even_when_computing_on_the_loop() -> None:
    calls: list[int] = []

    async def execute(feeds: dict[str, np.ndarray], alone: bool) -> tuple[list[np.ndarray], int]:
        calls.append(len(feeds["x"]))  # computes on the event loop: no await, so nothing else runs meanwhile
        return [feeds["x"] * 2 + 1], 1000

    async def scenario() -> None:
        batcher = MicroBatcher(execute, label="m v1", max_batch_size=8, max_delay_us=0, max_queue_size=8, timeout_s=5, run_when_idle=True)
        batcher.start()
        burst = [asyncio.create_task(batcher.submit({"x": np.full((1, 3), i)}, 1)) for i in range(6)]  # tasks ready in one pass
        results = await asyncio.gather(*burst)
        assert calls == [1, 5]
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result.outputs[0], np.full((1, 3), 2 * i + 1))
        await asyncio.sleep(0)  # a later pass: a lone request runs at once again
        assert (await batcher.submit({"x": np.zeros((1, 3))}, 1)).queue_ns == 0 and calls == [1, 5, 1]
        await batcher.close()

    asyncio.run(scenario())
