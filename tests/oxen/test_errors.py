"""Oxen's errors take the core's ErrorCode for their HTTP status (one table, the core's),
and every core code reads as an oxen-server status_message in Oxen's envelope."""

from __future__ import annotations

import json

import pytest

from evaldock.server.errors import ErrorCode
from evaldock.server.oxen.errors import OxenApiError, OxenErrors


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.INVALID_REQUEST),
        (401, ErrorCode.UNAUTHORIZED),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.NOT_FOUND),
        (405, ErrorCode.METHOD_NOT_ALLOWED),
        (409, ErrorCode.CONFLICT),
        (413, ErrorCode.TOO_LARGE),
        (415, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
        (422, ErrorCode.UNPROCESSABLE),
        (501, ErrorCode.NOT_IMPLEMENTED),
        (503, ErrorCode.UNAVAILABLE),
        (500, ErrorCode.INTERNAL),
    ],
)
def test_an_oxen_error_carries_the_cores_code_for_its_status(status: int, code: str) -> None:
    # Oxen kept its own copy of the table, which lacked 403, 405, 415, 422 and 503.
    assert OxenApiError(status, "what happened", "bad_request").code == code


@pytest.mark.parametrize(
    ("status", "status_message"),
    [(503, "service_unavailable"), (422, "bad_request"), (404, "resource_not_found")],
)
def test_an_injected_error_reads_as_oxen_server_would_say_it(
    status: int, status_message: str
) -> None:
    response = OxenErrors().injected(status, "injected by the control plane")
    body = json.loads(bytes(response.body))
    assert response.status_code == status
    assert body["status"] == "error" and body["status_message"] == status_message
    assert body["status_description"] == "injected by the control plane"
