"""The app factory: routers, one error shape for every failure, body limit, and the lifespan that loads models."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from lutnet import __version__
from lutnet.errors import LutnetError
from lutnet.service import schemas
from lutnet.service.compute import ComputeThreads
from lutnet.service.dataplane import DataPlane
from lutnet.service.errors import ServiceError
from lutnet.service.metrics import PUBLISH_S, ServiceMetrics
from lutnet.service.repository import ModelRegistry
from lutnet.service.fastpath import BodyDeadlines, InferenceRoutes, client_gone, too_large
from lutnet.service.routes import build_routers, inference_docs_router, json_response
from lutnet.service.settings import Settings

log = logging.getLogger("lutnet.serve")
DOCS_ASSETS = "/docs-assets"  # Swagger UI's and ReDoc's files, from the fastapi-offline package

DESCRIPTION = """Serves fused lutnet models (plain ONNX) with onnxruntime.

* **Open Inference Protocol v2** under `/v2`: JSON tensors and the binary tensor data extension
  (`Inference-Header-Content-Length`), so Triton/KServe clients work unchanged.
* **Simple API** `POST /v1/models/{model_name}:predict` with `{"instances": [[...], ...]}`.
* Every error is `{"error": "..."}` with the protocol's status code.
"""


class LutnetAPI(FastAPI):
    """FastAPI with the two hot routes (``lutnet.service.fastpath``) answered before any of FastAPI's own per-request work.

    They sit in front of FastAPI's middleware stack, not in it: FastAPI's and Starlette's per-request work
    (telemetry check, error middleware, router, request handler) would cost more than a small model computes.
    Every other request goes through FastAPI as usual.
    """

    hot_routes: InferenceRoutes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.hot_routes
        if hot is not None and scope["type"] == "http":
            route = hot.match(scope)
            if route is not None:
                await hot.answer(route, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, registry: ModelRegistry | None = None) -> FastAPI:
    """The FastAPI app serving ``registry`` (by default the repository named in ``settings``); models load in its lifespan."""
    if registry is None:
        if settings.repository is None:
            raise LutnetError("model repository", expected="a directory (--repository DIR or LUTNET_REPOSITORY)", got="none")
        registry = ModelRegistry(settings.repository, settings, ServiceMetrics(settings.stats_window, settings.metrics_dir))
    plane = DataPlane(settings, registry, registry.metrics)
    deadlines = BodyDeadlines(settings.body_timeout_s)
    app = LutnetAPI(title="lutnet", version=__version__, description=DESCRIPTION, lifespan=lambda app: serving(plane, deadlines),
                    docs_url=None, redoc_url=None)
    _offline_docs(app)
    for router in build_routers(plane, settings.api_token):
        app.include_router(router)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _document(app, inference_docs_router(), [schemas.InferRequest, schemas.PredictRequest, schemas.RepositoryIndexRequest])
    app.add_middleware(BodyLimit, registry=registry, deadlines=deadlines)  # the hot routes enforce the same limits themselves
    app.hot_routes = InferenceRoutes(plane, deadlines)
    app.state.plane = plane
    return app


def create_app_from_environment() -> FastAPI:
    """uvicorn factory for ``lutnet serve``: settings from ``LUTNET_*`` (the CLI exports its flags there for every worker)."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def configure_logging(level: str) -> None:
    """Log lines of the service to stderr at ``level``."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    logging.getLogger("lutnet").setLevel(level.upper())


@contextlib.asynccontextmanager
async def serving(plane: DataPlane, deadlines: BodyDeadlines) -> AsyncIterator[None]:
    """Lifespan: load models (sessions are created here, after any fork), poll, log statistics, cut off stalled
    bodies; drain on exit."""
    settings = plane.settings
    threads = ComputeThreads(os.cpu_count() or 1, "onnxruntime") if settings.execution != "inline" else None
    await plane.registry.start(threads)
    if not plane.registry.defaults():
        log.warning("no model is loaded from %s; the server answers 404 until one is loaded", plane.registry.repository)
    restore_signal = _drain_on_sigterm(plane)
    publish = PUBLISH_S if plane.metrics.shared_dir is not None else 0
    jobs = (
        (settings.poll_seconds, plane.registry.sync),
        (settings.stats_log_s, _log_statistics(plane)),
        (deadlines.timeout_s / 4, deadlines.sweep),  # a stalled body is cut off within a quarter of the timeout after it
        (publish, _publish(plane)),  # this worker's counts, for the others' /metrics and statistics answers
    )
    tasks = [asyncio.create_task(_every(seconds, job)) for seconds, job in jobs if seconds > 0]
    # Everything built so far (FastAPI, pydantic, onnxruntime bindings, the models) lives as long as the
    # process: moved out of the collector's sight, it no longer makes each full collection a pause of
    # tens of milliseconds in the latency tail.
    gc.collect()
    gc.freeze()
    plane.started = True
    try:
        yield
    finally:
        plane.begin_shutdown()
        for task in tasks:
            task.cancel()
        await plane.registry.close()
        if threads is not None:
            threads.shutdown()
        restore_signal()
        plane.metrics.publish()
        for model in plane.registry.loaded():
            log.info("statistics at shutdown: %s", model.stats.summary())


def _drain_on_sigterm(plane: DataPlane) -> Callable[[], None]:
    """Chain a SIGTERM handler before the server's own: readiness turns false at once, then the server drains.

    Only where a server (uvicorn) already handles SIGTERM in this main thread; elsewhere nothing changes.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        return lambda: None

    def on_sigterm(signum: int, frame: Any) -> None:
        if not plane.draining:
            log.info("SIGTERM: readiness is false; finishing in-flight requests (grace %s s)", plane.settings.shutdown_grace_s)
        plane.begin_shutdown()
        previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    return lambda: signal.signal(signal.SIGTERM, previous)


async def _every(seconds: float, job: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:  # a failed poll or log line must not stop the loop; the next round tries again
            log.exception("periodic job failed")


def _log_statistics(plane: DataPlane) -> Callable[[], Any]:
    async def job() -> None:
        for model in plane.registry.loaded():
            if model.stats.recent_percentiles()["window"]:
                log.info("%s", model.stats.summary())

    return job


def _publish(plane: DataPlane) -> Callable[[], Any]:
    async def job() -> None:
        await asyncio.to_thread(plane.metrics.publish)

    return job


class BodyLimit:
    """The body limits of the hot routes for every other route: 413 for a body over the registry's ``body_limit``, at
    once from Content-Length or while a chunked body streams in; 408 for a body that stalls (``BodyDeadlines``)."""

    def __init__(self, app: ASGIApp, registry: ModelRegistry, deadlines: BodyDeadlines) -> None:
        self.app = app
        self.registry = registry
        self.deadlines = deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.registry.body_limit
        length = next((int(value) for key, value in scope["headers"] if key == b"content-length" and value.isdigit()), None)
        if length is not None and length > limit:
            return await _error_response(too_large(limit, f"{length} bytes"))(scope, receive, send)
        await self.app(scope, self._guarded(receive, limit), send)

    def _guarded(self, receive: Receive, limit: int) -> Receive:
        seen, since, complete = 0, time.monotonic(), False

        async def guarded() -> Any:
            nonlocal seen, complete
            if complete:  # the body is in; a route listening for the client to go away (a streamed file) hears it as is
                return await receive()
            message = await self.deadlines.receive(receive, since)
            if message["type"] == "http.disconnect":
                raise client_gone()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit, f"more than {limit} bytes")
            complete = not message.get("more_body", False)
            return message

        return guarded


def _error_response(exc: ServiceError) -> Response:
    response = json_response({"error": str(exc)}, exc.status_code)
    response.headers.update(exc.headers)
    return response


async def _service_error(request: Request, exc: Exception) -> Response:
    return _error_response(exc)  # type: ignore[arg-type]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; the routes are listed at /docs"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}; allowed: {(exc.headers or {}).get('Allow', '')}"
    else:
        message = str(exc.detail)
    response = json_response({"error": message}, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return json_response({"error": f"invalid request: {problems}"}, 400)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"error": f"internal server error ({type(exc).__name__}); see the server log"}, 500)


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts, stylesheet and icon served from the fastapi-offline package
    rather than a public CDN, and ReDoc without web fonts, so both work air-gapped."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(resources.files("fastapi_offline") / "static")), name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        """The OpenAPI document's URL and the assets' folder, under the proxy's root path if any."""
        prefix = request.scope.get("root_path", "")
        return prefix + (app.openapi_url or ""), prefix + DOCS_ASSETS

    async def swagger(request: Request) -> Response:
        openapi, assets = urls(request)
        return get_swagger_ui_html(openapi_url=openapi, title=f"{app.title} - Swagger UI", swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css", swagger_favicon_url=f"{assets}/favicon.png")

    async def redoc(request: Request) -> Response:
        openapi, assets = urls(request)
        return get_redoc_html(openapi_url=openapi, title=f"{app.title} - ReDoc", redoc_js_url=f"{assets}/redoc.standalone.js",
                              redoc_favicon_url=f"{assets}/favicon.png", with_google_fonts=False)

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)


def _document(app: FastAPI, extra: APIRouter, bodies: list[type]) -> None:
    """OpenAPI of the app plus the routes ``lutnet.service.fastpath`` serves, with the schemas of bodies parsed by hand."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=[*app.routes, *extra.routes])
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in bodies:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")  # type: ignore[attr-defined]
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
