"""Qianfan's answers to failures, as the console API and Baidu's IAM give them.

- Business errors (a bad parameter, an unknown evaluation) come at HTTP 200 with
  ``{log_id, error_code: 500001, error_msg: "param invalid: <field> <why>"}``: the SDK reads
  ``error_code`` only after a 2xx and raises ``APIError``. Never 500000, 336100 or 18:
  the SDK retries those (``CONSOLE_API_RETRY_ERR_CODES``), so a refusal would be resent.
- IAM failures (credentials, signatures) come at 401/403 with ``X-Bce-Error-Code`` and
  ``X-Bce-Error-Message`` (the SDK compares the message verbatim) and a JSON body
  ``{requestId, code, message}`` as Baidu's gateway sends it. Routing and size failures
  use the same non-2xx shape.
"""

from __future__ import annotations

import secrets

from starlette.responses import Response

from ..auth import AuthFailed
from ..errors import ApiError, ErrorCode, VendorErrors
from ..jsonio import JSONResponse
from ..names import name_problem
from .signing import IAM_ERRORS, SignatureFailure

PARAM_INVALID = 500001  # APIErrorCode: the console's "param invalid"
PARAM_INVALID_TEXT = "param invalid"
BCE_CODE = "X-Bce-Error-Code"
BCE_MESSAGE = "X-Bce-Error-Message"


def log_id() -> str:
    """Baidu's request id: a decimal string (the seed shows ``"3617826755"``)."""
    return str(1_000_000_000 + secrets.randbelow(9_000_000_000))


def param_invalid(field: str, why: str) -> ApiError:
    """``param invalid: <field> <why>``, answered at HTTP 200."""
    return ApiError(400, f"{PARAM_INVALID_TEXT}: {field} {why}", code=ErrorCode.INVALID_REQUEST)


def name_invalid(name: str, field: str) -> ApiError | None:
    """The console's 500001 for a user-chosen name that is not printable or is path-like
    (evaldock.server.names); None when the name is fine."""
    problem = name_problem(name, field)
    if problem is None:
        return None
    # name_problem's sentence starts with the field, as "param invalid: <field> <why>".
    return param_invalid(field, problem.removeprefix(f"{field} "))


def evaluation_not_found(eval_id: object) -> ApiError:
    return param_invalid("evaluation", f"{eval_id} not found")


def _gateway(status: int, code: str, message: str, error: ErrorCode) -> ApiError:
    return ApiError(status, message, code=error, headers={BCE_CODE: code, BCE_MESSAGE: message})


class QianfanErrors(VendorErrors):
    def render(self, err: ApiError) -> Response:
        if err.status == 400:
            message = err.message
            if not message.startswith(PARAM_INVALID_TEXT):
                message = f"{PARAM_INVALID_TEXT}: {message}"
            return JSONResponse(
                {"log_id": log_id(), "error_code": PARAM_INVALID, "error_msg": message},
                status_code=200,
            )
        code = err.headers.get(BCE_CODE) or _CODES.get(err.code, "InternalError")
        headers = {BCE_CODE: code, BCE_MESSAGE: err.message, **err.headers}
        return JSONResponse(
            {"requestId": log_id(), "code": code, "message": err.message},
            status_code=err.status,
            headers=headers,
        )

    def auth_failed(self, exc: AuthFailed) -> ApiError:
        try:
            kind = SignatureFailure(exc.kind)
        except ValueError:
            kind = SignatureFailure.CREDENTIAL_NOT_FOUND
        iam = IAM_ERRORS[kind]
        error = ErrorCode.UNAUTHORIZED if iam.status == 401 else ErrorCode.FORBIDDEN
        return _gateway(iam.status, iam.code, iam.text(exc.reason), error)

    def unauthorized(self) -> ApiError:
        return self.auth_failed(AuthFailed(kind=SignatureFailure.CREDENTIAL_NOT_FOUND.value))

    def forbidden(self, message: str) -> ApiError:
        return _gateway(403, "AccessDenied", message, ErrorCode.FORBIDDEN)

    def route_not_found(self, method: str, path: str) -> ApiError:
        return _gateway(404, "NotFound", f"No route for {method} {path}", ErrorCode.NOT_FOUND)

    def method_not_allowed(self, method: str, path: str) -> ApiError:
        return _gateway(
            405,
            "MethodNotAllowed",
            f"Method {method} is not allowed on {path}; the console API is POST",
            ErrorCode.METHOD_NOT_ALLOWED,
        )

    def unsupported_media_type(self, given: str, accepted: list[str]) -> ApiError:
        # A wrong Content-Type is a parameter error to the console (HTTP 200, 500001).
        return param_invalid("Content-Type", f"{given} is not accepted; send {accepted[0]}")

    def injected(self, status: int, message: str, code: int | None = None) -> Response:
        """A control-plane fault: with a business ``code`` the console's body at HTTP 200
        (the SDK retries 336100, 18 and 500000 — what a retry test injects); else the
        gateway's answer at ``status``."""
        if code is not None:
            return JSONResponse(
                {"log_id": log_id(), "error_code": code, "error_msg": message},
                status_code=200 if status < 300 else status,
            )
        return super().injected(status, message, code)

    def internal(self) -> ApiError:
        return _gateway(500, "InternalError", "Internal server error", ErrorCode.INTERNAL)


_CODES = {
    ErrorCode.UNAUTHORIZED: "NotFound",
    ErrorCode.FORBIDDEN: "AccessDenied",
    ErrorCode.NOT_FOUND: "NotFound",
    ErrorCode.METHOD_NOT_ALLOWED: "MethodNotAllowed",
    ErrorCode.TOO_LARGE: "RequestEntityTooLarge",
    ErrorCode.UNAVAILABLE: "ServiceUnavailable",
    ErrorCode.INTERNAL: "InternalError",
}
