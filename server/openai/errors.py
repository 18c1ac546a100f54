"""OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``.

The client maps the status to its exception class and retries 408, 409, 429 and 5xx twice
unless the answer says ``x-should-retry: false``: deterministic refusals here are 400s,
and a 5xx this surface sends carries that header.
"""

from __future__ import annotations

from starlette.responses import Response

from .. import jsonio
from ..auth import AuthFailed
from ..errors import ApiError, ErrorCode, VendorErrors

TYPES = {
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}


class OpenAIError(ApiError):
    """An ApiError with OpenAI's ``param`` and ``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        vendor_code: str | None = None,
        code: ErrorCode = ErrorCode.INVALID_REQUEST,
    ) -> None:
        super().__init__(status, message, code=code)
        self.param = param
        self.vendor_code = vendor_code


class OpenAIErrors(VendorErrors):
    def render(self, err: ApiError) -> Response:
        kind = (
            "server_error" if err.status >= 500 else TYPES.get(err.status, "invalid_request_error")
        )
        headers = dict(err.headers)
        if err.status >= 500 or err.status == 409:
            # Nothing here fails in a way a retry two seconds later would fix.
            headers.setdefault("x-should-retry", "false")
        return jsonio.JSONResponse(
            {
                "error": {
                    "message": err.message,
                    "type": kind,
                    "param": getattr(err, "param", None),
                    "code": getattr(err, "vendor_code", None),
                }
            },
            status_code=err.status,
            headers=headers,
        )

    def unauthorized(self) -> ApiError:
        return OpenAIError(
            401,
            "Incorrect API key provided. Use a key of [auth.openai] keys (the development "
            "default is 'test'): OpenAI(base_url=..., api_key='test').",
            vendor_code="invalid_api_key",
            code=ErrorCode.UNAUTHORIZED,
        )

    def auth_failed(self, exc: AuthFailed) -> ApiError:
        return self.unauthorized()

    def route_not_found(self, method: str, path: str) -> ApiError:
        return OpenAIError(404, f"Invalid URL ({method} {path})", code=ErrorCode.NOT_FOUND)

    def method_not_allowed(self, method: str, path: str) -> ApiError:
        return OpenAIError(
            405, f"Invalid method for URL ({method} {path})", code=ErrorCode.METHOD_NOT_ALLOWED
        )


def bad_request(message: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param)


def not_found(kind: str, object_id: str, param: str | None = None) -> OpenAIError:
    """OpenAI's words for a missing object: ``No such File object: file-x``."""
    return OpenAIError(
        404, f"No such {kind} object: {object_id}", param=param, code=ErrorCode.NOT_FOUND
    )
