"""Errors as the vendors send them.

Anything in the server raises :class:`ApiError` (status + a clear message + a core
:class:`ErrorCode`); the surface that owns the request renders it in its vendor's own
envelope through its :class:`VendorErrors`. Nothing reaches the client as a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from starlette.responses import Response

from .auth import AuthFailed
from .jsonio import JSONResponse


class ErrorCode(StrEnum):
    """What went wrong, in the core's words; envelopes translate it to the vendor's."""

    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNPROCESSABLE = "unprocessable"
    NOT_IMPLEMENTED = "not_implemented"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal_error"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: ErrorCode = ErrorCode.INVALID_REQUEST,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


class VendorErrors:
    """A vendor's error envelope and stock messages; surfaces override what differs."""

    def render(self, err: ApiError) -> Response:
        return JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)

    def unauthorized(self) -> ApiError:
        return ApiError(401, "Unauthorized", code=ErrorCode.UNAUTHORIZED)

    def auth_failed(self, exc: AuthFailed) -> ApiError:
        """Missing or wrong credentials; a vendor whose IAM tells cases apart overrides."""
        return self.unauthorized()

    def forbidden(self, message: str) -> ApiError:
        return ApiError(403, message, code=ErrorCode.FORBIDDEN)

    def route_not_found(self, method: str, path: str) -> ApiError:
        return ApiError(404, f"No route for {method} {path}", code=ErrorCode.NOT_FOUND)

    def method_not_allowed(self, method: str, path: str) -> ApiError:
        return ApiError(
            405, f"Method {method} is not allowed on {path}", code=ErrorCode.METHOD_NOT_ALLOWED
        )

    def invalid_request(self, message: str) -> ApiError:
        return ApiError(400, message, code=ErrorCode.INVALID_REQUEST)

    def body_too_large(self, limit: int, setting: str = "[server] max_body_bytes") -> ApiError:
        return ApiError(
            413,
            f"Request body is larger than {limit} bytes (setting {setting})",
            code=ErrorCode.TOO_LARGE,
        )

    def unsupported_media_type(self, given: str, accepted: list[str]) -> ApiError:
        return ApiError(
            415,
            f"Content-Type {given} is not accepted here; send {' or '.join(accepted)}",
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )

    def injected(self, status: int, message: str, code: int | None = None) -> Response:
        """An error the control plane injects, in this vendor's envelope. ``code`` is a
        business error code for vendors that send one (Qianfan: at HTTP 200)."""
        return self.render(ApiError(status, message, code=code_for(status)))

    def internal(self) -> ApiError:
        return ApiError(500, "Internal server error", code=ErrorCode.INTERNAL)


def code_for(status: int) -> ErrorCode:
    """The core's error code of an HTTP status (surfaces map it to their own words)."""
    return {
        400: ErrorCode.INVALID_REQUEST,
        401: ErrorCode.UNAUTHORIZED,
        403: ErrorCode.FORBIDDEN,
        404: ErrorCode.NOT_FOUND,
        405: ErrorCode.METHOD_NOT_ALLOWED,
        409: ErrorCode.CONFLICT,
        413: ErrorCode.TOO_LARGE,
        415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        422: ErrorCode.UNPROCESSABLE,
        501: ErrorCode.NOT_IMPLEMENTED,
        503: ErrorCode.UNAVAILABLE,
    }.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.INVALID_REQUEST)
