"""Spice's errors: the runtime answers ``text/plain`` with the message alone.

Axum's JSON extractor splits bad bodies in two: text that is not JSON is a 400
("Failed to parse the request body as JSON: ..."), JSON of the wrong shape a 422
("Failed to deserialize the JSON body into the target type: ..."). The spec pins the
422 wording with ``x-message``; the core's JSON-syntax message is reworded here.
"""

from __future__ import annotations

from starlette.responses import Response

from ..errors import ApiError, ErrorCode, VendorErrors

DESERIALIZE = "Failed to deserialize the JSON body into the target type"
_NOT_JSON = "Request body is not valid JSON: "


class SpiceErrors(VendorErrors):
    def render(self, err: ApiError) -> Response:
        return Response(
            err.message,
            status_code=err.status,
            media_type="text/plain; charset=utf-8",
            headers=err.headers,
        )

    def unauthorized(self) -> ApiError:
        return ApiError(401, "Unauthorized", code=ErrorCode.UNAUTHORIZED)

    def route_not_found(self, method: str, path: str) -> ApiError:
        return ApiError(404, f"No route for {method} {path}", code=ErrorCode.NOT_FOUND)

    def invalid_request(self, message: str) -> ApiError:
        if message.startswith(DESERIALIZE):
            return ApiError(422, message, code=ErrorCode.UNPROCESSABLE)
        if message.startswith(_NOT_JSON):
            message = "Failed to parse the request body as JSON: " + message[len(_NOT_JSON) :]
        return ApiError(400, message, code=ErrorCode.INVALID_REQUEST)


def not_found(kind: str, name: str) -> ApiError:
    """``eval 'x' not found``, ``model 'x' not found``, ``dataset 'x' not found``."""
    return ApiError(404, f"{kind} '{name}' not found", code=ErrorCode.NOT_FOUND)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, code=ErrorCode.INVALID_REQUEST)
