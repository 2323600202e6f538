"""A bounded HTTP/1.1 load generator: N keep-alive connections POST one body as fast as answers come back.

Plain asyncio streams, no client library, so the client costs little next to the servers it measures.
``python -m benchmarks.loadgen URL --body '{"...": ...}' --concurrency 8 --duration 5`` prints one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from lutnet.errors import LutnetError


@dataclass(frozen=True)
class LoadResult:
    """Throughput and latency of one load run (errors are non-2xx answers; their latency is not counted)."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))]


class Connection:
    """One keep-alive connection sending the same prepared request; reconnects if the server closes it."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self) -> int:
        """Send the request, read the whole answer; returns its status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines if ": " in line)
        if headers.get("transfer-encoding") == "chunked":
            await self.read_chunked_body()
        else:
            await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            await self.close()
        return int(status_line.split(" ", 2)[1])

    async def read_chunked_body(self) -> None:
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await self.reader.readexactly(size + 2)
        await self.reader.readuntil(b"\r\n")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def prepared_request(url: str, body: bytes, content_type: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LutnetError("unsupported URL", expected="http://HOST:PORT/PATH", got=url)
    port = parts.port or 80
    path = parts.path or "/"
    head = f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return parts.hostname, port, head.encode("latin-1") + body


async def generate_load(
    url: str, body: bytes, *, concurrency: int, duration_s: float, max_requests: int | None = None,
    warmup_s: float = 0.5, content_type: str = "application/json",
) -> LoadResult:
    """Keep ``concurrency`` requests in flight for ``duration_s`` (or until ``max_requests``), after a warm-up not counted."""
    host, port, request = prepared_request(url, body, content_type)
    latencies: list[float] = []
    errors = 0
    issued = 0  # requests sent while measuring: the max_requests bound is checked before sending, so it is exact
    measuring = False

    def may_send(deadline: float) -> bool:
        nonlocal issued
        if time.perf_counter() >= deadline or (measuring and max_requests is not None and issued >= max_requests):
            return False
        if measuring:
            issued += 1
        return True

    async def client(deadline: float) -> None:
        nonlocal errors
        connection = Connection(host, port, request)
        try:
            while may_send(deadline):
                started = time.perf_counter()
                status = await connection.exchange()
                if measuring:
                    if 200 <= status < 300:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(client(time.perf_counter() + warmup_s) for _ in range(concurrency)))
    measuring = True
    started = time.perf_counter()
    await asyncio.gather(*(client(started + duration_s) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return LoadResult(
        concurrency, len(ordered), errors, seconds, len(ordered) / seconds,
        *(1000 * percentile(ordered, fraction) for fraction in (0.50, 0.95, 0.99)),
    )


def measure(url: str, body: bytes, *, concurrency: int, duration_s: float, max_requests: int | None = None) -> LoadResult:
    """generate_load from synchronous code."""
    return asyncio.run(generate_load(url, body, concurrency=concurrency, duration_s=duration_s, max_requests=max_requests))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body", required=True, help="request body (JSON text)")
    parser.add_argument("--concurrency", "-c", type=int, default=1)
    parser.add_argument("--duration", "-d", type=float, default=5.0, help="seconds of measured load")
    parser.add_argument("--max-requests", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        result = measure(args.url, args.body.encode(), concurrency=args.concurrency, duration_s=args.duration, max_requests=args.max_requests)
    except (LutnetError, OSError) as error:
        print(f"benchmarks.loadgen: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
