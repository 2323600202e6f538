"""HTTP routes, one router per concern; each reads the request, calls the ``DataPlane`` and writes bytes back.

Handlers take the raw ``Request`` (path parameters are read from it and documented through
``openapi_extra``) so FastAPI solves no dependencies. The two inference routes are served by
``lutnet.service.fastpath`` in front of FastAPI's router; ``inference_docs_router`` holds their OpenAPI entries.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr

from lutnet.repository import MODEL_NAME_PATTERN, VERSION_PATTERN
from lutnet.service import dashboard, schemas
from lutnet.service.dataplane import DataPlane
from lutnet.service.errors import BadRequest, Forbidden, Unauthorized, Unavailable
from lutnet.service.protocol import BINARY_CONTENT_TYPE, JSON_CONTENT_TYPE, parse_json

Handler = Callable[[Request], Awaitable[Response]]
PATH_PARAMETERS = {  # name -> description and the pattern the server accepts (lutnet.repository)
    "model_name": ("Model name: a directory of the repository.", MODEL_NAME_PATTERN),
    "model_version": ("Model version: a numeric directory of the model; the newest loaded version when omitted.", VERSION_PATTERN),
}
ERRORS = {
    code: {"model": schemas.ErrorBody, "description": text}
    for code, text in (
        (400, "Bad request: what was expected and what was got."),
        (404, "Unknown model, version or route."),
        (413, "Body larger than max_request_bytes."),
        (503, "Server or model not ready, queue full, or shutting down."),
    )
}
BODY_ERRORS = {
    code: {"model": schemas.ErrorBody, "description": text}
    for code, text in ((408, "The body did not all arrive within body_timeout_s; the connection is closed."),)
}
GUARD_ERRORS = {
    code: {"model": schemas.ErrorBody, "description": text}
    for code, text in (
        (401, "Missing or wrong 'Authorization: Bearer <LUTNET_API_TOKEN>'."),
        (403, "Repository control is off: the server has no LUTNET_API_TOKEN."),
    )
}


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response serialized by orjson."""
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON_CONTENT_TYPE)


def build_routers(plane: DataPlane, api_token: SecretStr | None) -> list[APIRouter]:
    """Every router of the app, bound to ``plane``."""
    routers = [health_router(plane), model_router(plane), repository_router(plane, api_token), metrics_router(plane)]
    return routers + [dashboard_router(plane)] if plane.settings.dashboard else routers


def _documented(path: str, body: type | None = None, binary_body: bool = False) -> dict[str, Any]:
    """``openapi_extra`` declaring the path parameters (and the body) of a handler that reads the raw request."""
    extra: dict[str, Any] = {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}, "description": description}
            for name in re.findall(r"{(\w+)}", path)
            for description, pattern in [PATH_PARAMETERS[name]]
        ]
    }
    if body is not None:
        content = {JSON_CONTENT_TYPE: {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}
        if binary_body:
            content[BINARY_CONTENT_TYPE] = {
                "schema": {"type": "string", "format": "binary", "description": "JSON header then raw tensor bytes (binary tensor data extension)."}
            }
        extra["requestBody"] = {"required": True, "content": content}
    return extra


def _add(
    router: APIRouter,
    method: str,
    paths: list[str],
    handler: Handler,
    *,
    summary: str,
    model: Any = None,
    body: type | None = None,
    binary_body: bool = False,
    tags: list[str] | None = None,
    errors: dict[int, Any] = ERRORS,
    response_class: type[Response] = JSONResponse,
) -> None:
    """Route ``method paths`` to ``handler``, documented: a 200 of ``model`` (an empty one for a ``response_class`` without a
    media type), the errors it can answer, and its body."""
    responses = {**errors, **(BODY_ERRORS if body is not None else {})}
    if model is not None:
        responses[200] = {"model": model}
    for path in paths:
        router.add_api_route(
            path,
            handler,
            methods=[method],
            summary=summary,
            responses=responses,
            openapi_extra=_documented(path, body, binary_body),
            tags=tags,
            response_class=response_class,
        )


def _model_paths(suffix: str) -> list[str]:
    return [f"/v2/models/{{model_name}}{suffix}", f"/v2/models/{{model_name}}/versions/{{model_version}}{suffix}"]


def _model_of(request: Request) -> tuple[str, str | None]:
    params = request.path_params
    return params["model_name"], params.get("model_version")


def health_router(plane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["health"])

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        if not plane.ready():
            raise Unavailable("server is not ready: " + ("shutting down" if plane.draining else "models still loading"))
        return Response(status_code=200)

    async def server_metadata(request: Request) -> Response:
        return json_response(plane.server_metadata())

    _add(router, "GET", ["/v2/health/live"], live, summary="Liveness: 200 while the process serves HTTP", response_class=Response)
    _add(
        router,
        "GET",
        ["/v2/health/ready"],
        ready,
        summary="Readiness: 200 when models are loaded, 503 while starting or after SIGTERM",
        response_class=Response,
    )
    _add(router, "GET", ["/v2"], server_metadata, summary="Server metadata and protocol extensions", model=schemas.ServerMetadata)
    return router


def model_router(plane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["models (Open Inference Protocol v2)"])

    async def all_statistics(request: Request) -> Response:
        return json_response(plane.statistics())

    async def statistics(request: Request) -> Response:
        return json_response(plane.statistics(*_model_of(request)))

    async def metadata(request: Request) -> Response:
        return json_response(plane.model_metadata(*_model_of(request)))

    async def ready(request: Request) -> Response:
        if not plane.model_ready(*_model_of(request)):
            raise Unavailable("server is shutting down")
        return Response(status_code=200)

    async def config(request: Request) -> Response:
        return json_response(plane.model_config(*_model_of(request)))

    # /v2/models/stats first: otherwise it would be read as the metadata of a model named "stats".
    _add(router, "GET", ["/v2/models/stats"], all_statistics, summary="Statistics of every loaded model version", model=schemas.Statistics)
    _add(
        router,
        "GET",
        _model_paths("/stats"),
        statistics,
        summary="Statistics: counts and cumulative ns of queue and compute, recent p50/p95/p99",
        model=schemas.Statistics,
    )
    _add(router, "GET", _model_paths(""), metadata, summary="Model metadata: versions, input and output tensors", model=schemas.ModelMetadata)
    _add(router, "GET", _model_paths("/ready"), ready, summary="Model readiness: 200 when loaded", response_class=Response)
    _add(router, "GET", _model_paths("/config"), config, summary="Model configuration (Triton JSON form) and model card")
    return router


def repository_router(plane: DataPlane, api_token: SecretStr | None) -> APIRouter:
    router = APIRouter(tags=["repository"])

    def authorize(request: Request) -> None:
        # Safe by default: with no token configured, no client can change what the server serves.
        if api_token is None:
            raise Forbidden("repository load and unload are off: set LUTNET_API_TOKEN on the server to enable them (then send 'Authorization: Bearer <token>')")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_token.get_secret_value()}".encode()):
            raise Unauthorized("this route needs the header 'Authorization: Bearer <LUTNET_API_TOKEN>'")

    async def index(request: Request) -> Response:
        body = await request.body()
        options = parse_json(body) if body else {}
        if not isinstance(options, dict) or not isinstance(options.get("ready", False), bool):
            raise BadRequest("repository index body", expected='nothing or {"ready": true|false}', got=body[:60].decode(errors="replace"))
        return json_response(await plane.repository_index(options.get("ready", False)))

    async def load(request: Request) -> Response:
        authorize(request)
        await plane.load(request.path_params["model_name"])
        return json_response({})

    async def unload(request: Request) -> Response:
        authorize(request)
        await plane.unload(request.path_params["model_name"])
        return json_response({})

    _add(
        router,
        "POST",
        ["/v2/repository/index"],
        index,
        summary="Every model version in the repository with its state",
        model=list[schemas.RepositoryEntry],
        body=schemas.RepositoryIndexRequest,
    )
    guarded = {**ERRORS, **GUARD_ERRORS}
    _add(router, "POST", ["/v2/repository/models/{model_name}/load"], load, summary="Load or reload a model from disk (needs LUTNET_API_TOKEN)", errors=guarded)
    _add(router, "POST", ["/v2/repository/models/{model_name}/unload"], unload, summary="Stop serving a model (needs LUTNET_API_TOKEN)", errors=guarded)
    return router


def inference_docs_router() -> APIRouter:
    """OpenAPI entries of the routes ``lutnet.service.fastpath`` serves; this router is never mounted, only documented."""
    router = APIRouter()

    async def served_by_fastpath(request: Request) -> Response:
        raise AssertionError("the inference routes are answered by lutnet.service.fastpath before FastAPI routes anything")

    _add(
        router,
        "POST",
        _model_paths("/infer"),
        served_by_fastpath,
        tags=["models (Open Inference Protocol v2)"],
        summary="Inference: JSON tensors or the binary tensor data extension (no Content-Type needed)",
        model=schemas.InferResponse,
        body=schemas.InferRequest,
        binary_body=True,
    )
    _add(
        router,
        "POST",
        ["/v1/models/{model_name}:predict", "/v1/models/{model_name}/versions/{model_version}:predict"],
        served_by_fastpath,
        tags=["simple"],
        summary='Predict for curl: {"instances": [row, ...]} -> labels and probabilities, or values',
        model=schemas.PredictResponse,
        body=schemas.PredictRequest,
    )
    return router


class PrometheusText(Response):
    """The Prometheus text format, for the document of /metrics."""

    media_type = CONTENT_TYPE_LATEST


def metrics_router(plane: DataPlane) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    async def metrics(request: Request) -> Response:
        return PrometheusText(plane.metrics.exposition())

    _add(
        router,
        "GET",
        ["/metrics"],
        metrics,
        summary="Prometheus metrics: requests by outcome, latency, queue, compute and batch-size histograms",
        response_class=PrometheusText,
    )
    return router


def dashboard_router(plane: DataPlane) -> APIRouter:
    """The read-only dashboard and the curve data it draws; it shows what /metrics and the statistics routes show."""
    router = APIRouter(tags=["dashboard"])

    async def page(request: Request) -> Response:
        return HTMLResponse(dashboard.page())

    async def curves(request: Request) -> Response:
        return json_response(dashboard.activation_curves(plane.registry.get(*_model_of(request))))

    _add(router, "GET", ["/dashboard"], page, summary="Dashboard: live request rate, latency, out-of-range inputs, saturation and learned curves (HTML)",
         response_class=HTMLResponse)
    _add(
        router,
        "GET",
        ["/dashboard/models/{model_name}/activations", "/dashboard/models/{model_name}/versions/{model_version}/activations"],
        curves,
        summary="Learned activation curves of a sample of channels of every LUT layer, from the tables in the model card",
        model=schemas.ActivationCurves,
    )
    return router
