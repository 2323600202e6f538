"""The two hot routes, v2 infer and v1 predict, served straight from ASGI in front of FastAPI.

For a small model, passing a request through FastAPI (its telemetry check, Starlette's error
middleware, the router and request handler) costs more than the model computes, so these routes skip
it: match the path with one regular expression, read the headers once (body limit, binary
header length), read the body, call the ``DataPlane``, send bytes. Errors take the same
``{"error": ...}`` shape as every other route; an unexpected one is logged and answered 500 here, as
FastAPI's handler does for the other routes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from lutnet.service.dataplane import DataPlane
from lutnet.service.errors import MethodNotAllowed, PayloadTooLarge, RequestTimeout, ServiceError, Unavailable
from lutnet.service.protocol import BINARY_CONTENT_TYPE, HEADER_LENGTH, JSON_CONTENT_TYPE

INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
PREDICT = re.compile(r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:predict")
JSON_HEADER = (b"content-type", JSON_CONTENT_TYPE.encode())
BINARY_HEADER = (b"content-type", BINARY_CONTENT_TYPE.encode())
BINARY_LENGTH = HEADER_LENGTH.lower().encode()

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
# A matched route: its handler (model, version, body, binary header length) and the path's match.
Handler = Callable[[str, str | None, bytes, str | None], Awaitable[Answer]]
log = logging.getLogger("lutnet.serve")


EXPIRED = "the request body did not arrive in time"


def too_large(limit: int, got: str) -> PayloadTooLarge:
    """The 413 for a body over ``limit`` bytes."""
    return PayloadTooLarge("request body", expected=f"at most {limit} bytes (LUTNET_MAX_REQUEST_BYTES; by default what the loaded models accept)", got=got)


def client_gone() -> Unavailable:
    """The answer (that no one reads) to a request whose client hung up halfway through its body."""
    return Unavailable("the client disconnected before sending the whole body")


class BodyDeadlines:
    """The requests waiting for body bytes and since when; a periodic ``sweep`` cuts off those waiting past ``timeout_s``.

    A client that stops sending halfway through a body would otherwise hold its connection and request forever
    (uvicorn times out idle connections between requests only). One sweep for every request keeps the hot path
    to two dict operations, where a timer per request would cost it several times that.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.reading: dict[asyncio.Task[Any], float] = {}

    async def receive(self, receive: Receive, since: float) -> Message:
        """``receive()``, answered 408 (``RequestTimeout``) when the body began ``since`` and the sweep finds it overdue."""
        task = asyncio.current_task()
        assert task is not None
        self.reading[task] = since
        try:
            return await receive()
        except asyncio.CancelledError as exc:
            if exc.args != (EXPIRED,):
                raise
            task.uncancel()
            raise RequestTimeout("request body", expected=f"the whole body within {self.timeout_s:g} s (LUTNET_BODY_TIMEOUT_S)", got="less") from None
        finally:
            del self.reading[task]

    async def sweep(self) -> None:
        """Cancel every body read that began more than ``timeout_s`` ago."""
        overdue = time.monotonic() - self.timeout_s
        for task, since in list(self.reading.items()):
            if since < overdue:
                task.cancel(EXPIRED)


class InferenceRoutes:
    """Answers ``POST /v2/models/{m}[/versions/{v}]/infer`` and ``/v1/models/{m}[/versions/{v}]:predict``."""

    def __init__(self, plane: DataPlane, deadlines: BodyDeadlines) -> None:
        self.plane = plane
        self.registry = plane.registry  # its body_limit follows the loaded models
        self.deadlines = deadlines
        self.routes: tuple[tuple[re.Pattern[str], Handler], ...] = ((INFER, self._infer), (PREDICT, self._predict))

    def match(self, scope: Scope) -> tuple[Handler, re.Match[str]] | None:
        """The handler and path match of an HTTP request to a hot route, else None."""
        path = scope["path"]
        for pattern, handler in self.routes:
            found = pattern.fullmatch(path)
            if found is not None:
                return handler, found
        return None

    async def answer(self, route: tuple[Handler, re.Match[str]], scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request to a route ``match`` found; every outcome is a complete response."""
        handler, found = route
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(scope["method"], scope["path"], "POST")
            length, header_length = None, None
            for key, value in scope["headers"]:
                if key == b"content-length":
                    length = int(value) if value.isdigit() else None
                elif key == BINARY_LENGTH:
                    header_length = value.decode()
            limit = self.registry.body_limit
            if length is not None and length > limit:
                raise too_large(limit, f"{length} bytes")
            status, headers, body = await handler(found[1], found[2], await self._read_body(receive, limit), header_length)
        except ServiceError as exc:
            status, headers, body = error_answer(exc)
        except Exception as exc:
            log.error("unexpected error on %s %s", scope["method"], scope["path"], exc_info=exc)
            status, headers, body = 500, [JSON_HEADER], orjson.dumps({"error": f"internal server error ({type(exc).__name__}); see the server log"})
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        """The whole request body; 413 as soon as it grows past the limit (a chunked body has no Content-Length), 408 when
        it has not all arrived ``deadlines.timeout_s`` after the first read."""
        since = time.monotonic()
        message = await self.deadlines.receive(receive, since)
        if message["type"] == "http.request" and not message.get("more_body", False) and len(message.get("body", b"")) <= limit:
            return message.get("body", b"")  # the common case: the whole body in one message
        chunks, size = [], 0
        while True:
            if message["type"] == "http.disconnect":
                raise client_gone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit, f"more than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await self.deadlines.receive(receive, since)

    async def _infer(self, name: str, version: str | None, body: bytes, header_length: str | None) -> Answer:
        reply = await self.plane.infer(name, version, body, header_length)
        if reply.header_length is None:
            return 200, [JSON_HEADER], reply.body
        return 200, [BINARY_HEADER, (BINARY_LENGTH, str(reply.header_length).encode())], reply.body

    async def _predict(self, name: str, version: str | None, body: bytes, header_length: str | None) -> Answer:
        return 200, [JSON_HEADER], await self.plane.predict(name, version, body)


def error_answer(exc: ServiceError) -> Answer:
    """``{"error": "..."}`` with the error's status code and headers."""
    headers = [JSON_HEADER, *((key.lower().encode(), value.encode()) for key, value in exc.headers.items())]
    return exc.status_code, headers, orjson.dumps({"error": str(exc)})
