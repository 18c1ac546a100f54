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
