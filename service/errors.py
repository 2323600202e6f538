"""Errors the service answers with: each carries its HTTP status code and becomes ``{"error": "..."}``."""

from __future__ import annotations

from lutnet.errors import LutnetError


class ServiceError(LutnetError):
    """Base of every error the service turns into a JSON error response."""

    status_code = 500
    headers: dict[str, str] = {}


class BadRequest(ServiceError):
    """The request cannot be served as sent: malformed body, wrong tensor name, shape, datatype or values."""

    status_code = 400


class Unauthorized(ServiceError):
    """A guarded route was called without the API token."""

    status_code = 401


class Forbidden(ServiceError):
    """A route that is switched off by the server's configuration."""

    status_code = 403


class NotFound(ServiceError):
    """Unknown model, version or route."""

    status_code = 404


class MethodNotAllowed(ServiceError):
    """The route exists but not for this HTTP method."""

    status_code = 405

    def __init__(self, method: str, path: str, allowed: str) -> None:
        super().__init__(f"method {method} is not allowed on {path}; allowed: {allowed}")
        self.headers = {"Allow": allowed}


class RequestTimeout(ServiceError):
    """The client stopped sending its body; the connection is closed after the answer."""

    status_code = 408
    headers = {"Connection": "close"}


class PayloadTooLarge(ServiceError):
    """The request body is larger than ``max_request_bytes``."""

    status_code = 413


class Unavailable(ServiceError):
    """The server or model is not ready, its queue is full, or it is shutting down."""

    status_code = 503


class ModelLoadError(ServiceError):
    """A model version in the repository could not be loaded; the previous version keeps serving."""

    status_code = 400
