"""Errors as the vendors send them.

Anything in the server raises :class:`ApiError` (status + a clear message); the surface
that owns the request renders it in its vendor's own envelope through its
:class:`VendorErrors`. Nothing reaches the client as a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from .jsonio import JSONResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


class VendorErrors:
    """A vendor's error envelope and stock messages; surfaces override what differs."""

    def render(self, err: ApiError) -> Response:
        return JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)

    def unauthorized(self) -> ApiError:
        return ApiError(401, "Unauthorized", code="unauthorized")

    def route_not_found(self, method: str, path: str) -> ApiError:
        return ApiError(404, f"No route for {method} {path}", code="not_found")

    def method_not_allowed(self, method: str, path: str) -> ApiError:
        return ApiError(405, f"Method {method} is not allowed on {path}", code="method_not_allowed")

    def invalid_request(self, message: str) -> ApiError:
        return ApiError(400, message, code="invalid_request")

    def body_too_large(self, limit: int) -> ApiError:
        return ApiError(413, f"Request body is larger than {limit} bytes", code="too_large")

    def internal(self) -> ApiError:
        return ApiError(500, "Internal server error", code="internal_error")
