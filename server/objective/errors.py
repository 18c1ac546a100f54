"""Objective's error envelope: ``{"message": ..., "type": ...}`` with the HTTP status."""

from __future__ import annotations

from starlette.responses import Response

from ..errors import ApiError, ErrorCode, VendorErrors
from ..jsonio import JSONResponse


class ObjectiveErrors(VendorErrors):
    def render(self, err: ApiError) -> Response:
        return JSONResponse(
            {"message": err.message, "type": str(err.code)},
            status_code=err.status,
            headers=err.headers,
        )

    def unauthorized(self) -> ApiError:
        return ApiError(
            401,
            "Invalid API key or missing authorization. Send 'Authorization: Bearer <API key>'.",
            code=ErrorCode.UNAUTHORIZED,
            headers={"WWW-Authenticate": "Bearer"},
        )


def evaluation_not_found(evaluation_id: str) -> ApiError:
    return ApiError(404, f"Evaluation {evaluation_id} not found.", code=ErrorCode.NOT_FOUND)


def too_many_items(count: int, limit: int) -> ApiError:
    return ApiError(
        400,
        f"data has {count} items; this server accepts at most {limit} per evaluation "
        "(setting [objective] max_items).",
        code=ErrorCode.INVALID_REQUEST,
    )


def bad_name(problem: str) -> ApiError:
    """A user-chosen name refused by :func:`evaldock.server.names.name_problem`."""
    return ApiError(400, problem, code=ErrorCode.INVALID_REQUEST)
