"""The two hot routes, v2 infer and v1 predict, served straight from ASGI in front of FastAPI's router.

For a model that computes in ~15 us, routing a request through FastAPI's router and request handler
costs several times the model (about 150 us with this app's 30 routes, measured with FastAPI 0.165),
so these routes skip it: match the path with one regular expression, read the body, call the
``DataPlane``, send bytes. Errors take the same ``{"error": ...}`` shape as every other route.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from service.dataplane import DataPlane
from service.errors import MethodNotAllowed, ServiceError, Unavailable
from service.protocol import BINARY_CONTENT_TYPE, HEADER_LENGTH, JSON_CONTENT_TYPE

INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
PREDICT = re.compile(r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:predict")
JSON_HEADER = (b"content-type", JSON_CONTENT_TYPE.encode())
BINARY_HEADER = (b"content-type", BINARY_CONTENT_TYPE.encode())

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class InferenceRoutes:
    """ASGI middleware answering ``POST /v2/models/{m}[/versions/{v}]/infer`` and ``/v1/models/{m}[/versions/{v}]:predict``."""

    def __init__(self, app: ASGIApp, plane: DataPlane) -> None:
        self.app = app
        self.plane = plane
        self.routes: tuple[tuple[re.Pattern[str], Callable[[str, str | None, bytes, Scope], Awaitable[Answer]]], ...] = (
            (INFER, self._infer),
            (PREDICT, self._predict),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for pattern, handler in self.routes:
                match = pattern.fullmatch(scope["path"])
                if match is not None:
                    return await self._answer(handler, match, scope, receive, send)
        await self.app(scope, receive, send)

    async def _answer(self, handler: Callable[..., Awaitable[Answer]], match: re.Match[str], scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(scope["method"], scope["path"], "POST")
            status, headers, body = await handler(match[1], match[2], await read_body(receive), scope)
        except ServiceError as exc:
            status, headers, body = error_answer(exc)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _infer(self, name: str, version: str | None, body: bytes, scope: Scope) -> Answer:
        header_length = next((value.decode() for key, value in scope["headers"] if key == b"inference-header-content-length"), None)
        reply = await self.plane.infer(name, version, body, header_length)
        if reply.header_length is None:
            return 200, [JSON_HEADER], reply.body
        return 200, [BINARY_HEADER, (HEADER_LENGTH.encode(), str(reply.header_length).encode())], reply.body

    async def _predict(self, name: str, version: str | None, body: bytes, scope: Scope) -> Answer:
        return 200, [JSON_HEADER], await self.plane.predict(name, version, body)


async def read_body(receive: Receive) -> bytes:
    """The whole request body (``BodyLimit`` outside this middleware stops one that grows too large)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Unavailable("the client disconnected before sending the whole body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def error_answer(exc: ServiceError) -> Answer:
    """``{"error": "..."}`` with the error's status code and headers."""
    headers = [JSON_HEADER, *((key.lower().encode(), value.encode()) for key, value in exc.headers.items())]
    return exc.status_code, headers, orjson.dumps({"error": str(exc)})
