"""What can go wrong in an Oxen repository, as data a provider renders in Oxen's envelope.

Each class carries the HTTP status, ``status_message`` and error ``title`` that oxen-server
(``crates/oxen-server/src/errors.rs``) answers with; a provider renders::

    {"status": "error", "status_message": e.status_message,
     "error": {"type": e.status_message, "title": e.title, "detail": str(e)},
     "oxen_version": ...}

with HTTP ``e.http_status``. ``str(e)`` is the detail and says what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response

# The core's status -> ErrorCode table (code_for), not a copy of it: a copy had drifted
# (403, 405, 415, 422 and 503 fell through to invalid_request or internal_error).
from ..errors import ApiError, VendorErrors, code_for
from ..jsonio import JSONResponse

NOT_FOUND = "resource_not_found"
ALREADY_EXISTS = "resource_already_exists"
BAD_REQUEST = "bad_request"
CONFLICT = "conflict"


class OxenStoreError(Exception):
    http_status = 400
    status_message = BAD_REQUEST
    title = "Bad request"


# -- not found -------------------------------------------------------------------------


class RepoNotFound(OxenStoreError):
    http_status, status_message, title = 404, NOT_FOUND, "Repository not found"

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(
            f"Repository '{namespace}/{name}' not found; create it with POST /api/repos"
        )


class BranchNotFound(OxenStoreError):
    http_status, status_message, title = 404, NOT_FOUND, "Branch does not exist"

    def __init__(self, branch: str) -> None:
        super().__init__(f"Could not find branch: {branch}; list branches with GET .../branches")
        self.branch = branch


class RevisionNotFound(OxenStoreError):
    http_status, status_message, title = 404, NOT_FOUND, "Revision not found"

    def __init__(self, revision: str) -> None:
        super().__init__(
            f"Could not find branch or commit: {revision}; pass a branch name or a full"
            " commit id from GET .../commits/history/<branch>"
        )
        self.revision = revision


class PathNotFound(OxenStoreError):
    http_status, status_message, title = 404, NOT_FOUND, "Path does not exist"

    def __init__(self, path: str, revision: str) -> None:
        super().__init__(
            f"Could not find path: {path} at revision {revision}; list the folder with"
            " GET .../dir/<revision>/<folder>"
        )
        self.path = path


# -- already exists / conflicts --------------------------------------------------------


class RepoExists(OxenStoreError):
    http_status, status_message, title = 409, ALREADY_EXISTS, "Repository already exists"

    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(
            f"Repository '{namespace}/{name}' already exists; pick another name or delete it first"
        )


class BranchExists(OxenStoreError):
    http_status, status_message, title = 409, ALREADY_EXISTS, "Branch already exists"

    def __init__(self, branch: str) -> None:
        super().__init__(f"Branch already exists: {branch}; pick another name")
        self.branch = branch


class CommitConflict(OxenStoreError):
    """The branch moved since ``expected_parent`` and changed a path this commit changes too."""

    http_status, status_message, title = 409, CONFLICT, "Merge conflict"

    def __init__(self, branch: str, paths: Sequence[str]) -> None:
        shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
        super().__init__(
            f"Branch {branch} changed {shown} since the commit this change was based on;"
            " read the new version and retry, or commit to another branch"
        )
        self.branch = branch
        self.paths = list(paths)


class NotADirectory(OxenStoreError):
    http_status, status_message, title = 400, BAD_REQUEST, "Path is a file"

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is a file, not a folder; read it with GET .../file/<rev>/{path}")


class PathIsDirectory(OxenStoreError):
    http_status, status_message, title = 400, BAD_REQUEST, "Path is a directory"

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is a folder, not a file; list it with GET .../dir/<rev>/{path}"
            " or pick a path that is not an existing folder"
        )


# -- bad input -------------------------------------------------------------------------


class InvalidPath(OxenStoreError):
    title = "Invalid path"

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(
            f"invalid path {raw!r}: {reason}; use a relative path of '/'-separated names"
            " without '.', '..', backslashes or control characters"
        )
        self.raw = raw
        self.reason = reason


class InvalidName(OxenStoreError):
    title = "Invalid name"

    def __init__(self, what: str, value: str, rule: str) -> None:
        super().__init__(f"invalid {what} {value!r}: {rule}")
        self.what = what


class NameRefused(InvalidName):
    """A repository or branch name refused by :func:`evaldock.server.names.name_problem`;
    the message is that sentence (what is wrong and the fix)."""

    def __init__(self, what: str, sentence: str) -> None:
        OxenStoreError.__init__(self, sentence)
        self.what = what


class PathRefused(InvalidPath):
    """A file path refused by :func:`evaldock.server.names.name_problem` (``path=True``)."""

    def __init__(self, raw: str, sentence: str) -> None:
        OxenStoreError.__init__(self, sentence)
        self.raw = raw
        self.reason = sentence


# -- the envelope a provider renders ---------------------------------------------------

# The oxen-server version this surface answers as (the client only prints it).
OXEN_VERSION = "0.65.1"
NOT_IMPLEMENTED = "not_implemented"
UNAUTHENTICATED = "unauthenticated"

_CODE_MESSAGES = {
    "invalid_request": BAD_REQUEST,
    "unauthorized": UNAUTHENTICATED,
    "forbidden": UNAUTHENTICATED,
    "not_found": NOT_FOUND,
    "method_not_allowed": "method_not_allowed",
    "conflict": CONFLICT,
    "too_large": "payload_too_large",
    "unsupported_media_type": "unsupported_media_type",
    "unprocessable": BAD_REQUEST,
    "not_implemented": NOT_IMPLEMENTED,
    "unavailable": "service_unavailable",
    "internal_error": "internal_server_error",
}

# Repository sub-resources of oxen-server that this surface does not serve (workspaces,
# clone/push/pull plumbing): their paths answer 501 instead of a bare 404.
UNSERVED_RESOURCES = frozenset(
    {
        "workspaces",
        "versions",
        "tree",
        "commits",
        "merge",
        "compare",
        "schemas",
        "stats",
        "chunk",
        "objects",
        "fork",
        "size",
        "transfer",
        "branches_lock",
        "lock",
    }
)
OUT_OF_SCOPE = (
    "evaldock serves Oxen repositories through RemoteRepo.upload (PUT"
    " /api/repos/<ns>/<repo>/file/<branch>/<dir>), get_file, download, ls, log and branches;"
    " workspaces (RemoteRepo.add/commit, oxen.DataFrame), clone, push and pull are not"
    " implemented: upload files with RemoteRepo.upload instead"
)


class OxenApiError(ApiError):
    """An :class:`ApiError` that knows its Oxen ``status_message`` and ``title``."""

    def __init__(self, status: int, message: str, status_message: str, title: str = "") -> None:
        super().__init__(status, message, code=code_for(status))
        self.status_message = status_message
        self.title = title or status_message.replace("_", " ").capitalize()


def from_store(e: OxenStoreError) -> OxenApiError:
    return OxenApiError(e.http_status, str(e), e.status_message, e.title)


def bad_request(message: str) -> OxenApiError:
    return OxenApiError(400, message, BAD_REQUEST, "Bad request")


def not_found(message: str) -> OxenApiError:
    return OxenApiError(404, message, NOT_FOUND, "Not found")


def not_implemented(what: str) -> OxenApiError:
    return OxenApiError(501, f"{what}: {OUT_OF_SCOPE}", NOT_IMPLEMENTED, "Not implemented")


class OxenErrors(VendorErrors):
    """Oxen's error envelope: ``{status: "error", status_message, status_description,
    oxen_version}`` plus oxen-server's ``error: {type, title, detail}``."""

    def render(self, err: ApiError) -> Response:
        if isinstance(err, OxenApiError):
            message, title = err.status_message, err.title
        else:
            message = _CODE_MESSAGES.get(str(err.code), BAD_REQUEST)
            title = message.replace("_", " ").capitalize()
        body = {
            "status": "error",
            "status_message": message,
            "status_description": err.message,
            "oxen_version": OXEN_VERSION,
            "error": {"type": message, "title": title, "detail": err.message},
        }
        return JSONResponse(body, status_code=err.status, headers=err.headers)

    def unauthorized(self) -> ApiError:
        return OxenApiError(
            401,
            "missing or unknown bearer token; configure it with"
            " oxen.auth.config_auth(token, host=...) or send Authorization: Bearer <token>",
            UNAUTHENTICATED,
            "Unauthenticated",
        )

    def route_not_found(self, method: str, path: str) -> ApiError:
        parts = path.strip("/").split("/")
        # /api/repos/<ns>/<repo>/<resource>/...: a known oxen-server resource we do not serve
        if len(parts) >= 5 and parts[:2] == ["api", "repos"] and parts[4] in UNSERVED_RESOURCES:
            return not_implemented(f"{method} .../{parts[4]}")
        return not_found(f"no route for {method} {path}; see /oxen/openapi.yaml for the routes")

    def body_too_large(self, limit: int, setting: str = "[server] max_body_bytes") -> ApiError:
        where = (
            "setting [oxen] max_upload_bytes for uploads, [server] max_body_bytes otherwise"
            if setting == "[server] max_body_bytes"
            else setting
        )
        return OxenApiError(
            413,
            f"request body is larger than {limit} bytes ({where})",
            "payload_too_large",
            "Payload too large",
        )

    def internal(self) -> ApiError:
        return OxenApiError(
            500, "internal server error; see the server log", "internal_server_error"
        )
