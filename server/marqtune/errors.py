"""Marqtune's error envelope: a top-level ``{"message": ...}`` with the HTTP status.

The texts of the documentation's seed page are reproduced exactly (including the 400
"Invalid request method" for unknown paths and methods, and the trailing periods of the
401 and 500 bodies).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ApiError, ErrorCode, VendorErrors

INVALID_REQUEST = "Invalid request method"
NOT_EVALUATION_DATASET = "Dataset must be of type 'evaluation'"
DATASET_NOT_READY = "Dataset is not created yet, wait until status of dataset is ready"
FAILED_DATASET = "Job can not be started with failed dataset"


class MarqtuneErrors(VendorErrors):
    def unauthorized(self) -> ApiError:
        return ApiError(401, "Unauthorized.", code=ErrorCode.UNAUTHORIZED)

    def route_not_found(self, method: str, path: str) -> ApiError:
        return ApiError(400, INVALID_REQUEST, code=ErrorCode.INVALID_REQUEST)

    def method_not_allowed(self, method: str, path: str) -> ApiError:
        return ApiError(400, INVALID_REQUEST, code=ErrorCode.INVALID_REQUEST)

    def internal(self) -> ApiError:
        return ApiError(500, "Internal server error.", code=ErrorCode.INTERNAL)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, code=ErrorCode.INVALID_REQUEST)


def not_found(kind: str) -> ApiError:
    # The documented wording for evaluations ("evaluation not found"), echoed per kind.
    return ApiError(404, f"{kind} not found", code=ErrorCode.NOT_FOUND)


def model_not_found(model_id: str) -> ApiError:
    return bad_request(f"Model with id {model_id} not found")


def dataset_not_found(dataset_id: str) -> ApiError:
    return bad_request(f"Dataset with id {dataset_id} not found")


def invalid_checkpoint(available: Sequence[str]) -> ApiError:
    return bad_request(f"Invalid checkpoint. Available checkpoints: {', '.join(available)}")


def forbidden(message: str) -> ApiError:
    return ApiError(403, message, code=ErrorCode.FORBIDDEN)


def conflict(message: str) -> ApiError:
    return ApiError(409, message, code=ErrorCode.CONFLICT)
