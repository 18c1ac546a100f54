"""Paths inside a repository, branch names and repository names: one checker each.

A path never reaches the file system (bytes live in the content-addressed blob store), but
it is echoed in URLs and could be materialised by a client on checkout, so the rules are
strict: a relative, ``/``-separated list of names, none of them ``.``/``..``, no backslash,
NUL or other control character, no name ``.oxen`` (Oxen's own folder), and no segment
whose percent-decoded form (decoded up to 3 times, for double and triple encoding) is one
of those. On top, :func:`evaldock.server.names.name_problem` (the house rule for every
user-chosen name) refuses C1 controls, bidi overrides, U+FFFD and names of dots only
(``...``) in paths, branch names and repository names. The name is returned *as given*
(not decoded) since the router has already decoded the URL once and a file may really be
called ``100%25.csv``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from ..names import name_problem
from .errors import InvalidName, InvalidPath, NameRefused, PathRefused

# Linux limits: 4096 bytes for a path, 255 for a name.
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_DECODE_ROUNDS = 3


def clean_path(raw: str, *, allow_root: bool = False) -> str:
    """Return ``raw`` without a trailing ``/``, or raise :class:`InvalidPath`.

    ``allow_root``: the empty path (the repository's top folder) is accepted, for listings.
    """
    if raw.startswith("/"):
        raise InvalidPath(raw, "absolute paths are not allowed")
    path = raw[:-1] if raw.endswith("/") else raw
    if not path:
        if allow_root:
            return ""
        raise InvalidPath(raw, "the path is empty")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(raw, f"longer than {MAX_PATH_BYTES} bytes")
    if _DRIVE.match(path):
        raise InvalidPath(raw, "drive letters are not allowed")
    for segment in path.split("/"):
        _check_segment(raw, segment)
    # Then the house rule for user-chosen names on every segment: C1 controls, bidi
    # overrides ('a\u202ecsv.exe' shows as 'aexe.vsc'), U+FFFD, names of dots only ('...').
    problem = name_problem(path, "file path", path=True)
    if problem is not None:
        raise PathRefused(raw, problem)
    return path


def _check_segment(raw: str, segment: str) -> None:
    if not segment:
        raise InvalidPath(raw, "empty name between two '/'")
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidPath(raw, f"a name is longer than {MAX_NAME_BYTES} bytes")
    decoded = segment
    for _ in range(_DECODE_ROUNDS + 1):
        if decoded in (".", ".."):
            raise InvalidPath(raw, f"'{segment}' names the current or parent folder")
        if "\\" in decoded:
            raise InvalidPath(raw, "backslashes are not allowed")
        if _CONTROL.search(decoded):
            raise InvalidPath(raw, "NUL and control characters are not allowed")
        if "/" in decoded:
            raise InvalidPath(raw, "an encoded '/' is not allowed inside a name")
        if decoded.lower() == ".oxen":
            raise InvalidPath(raw, "'.oxen' is reserved for Oxen's own data")
        if "%" not in decoded:
            return
        # errors="replace": an escape that is not UTF-8 becomes U+FFFD, which is harmless.
        once = unquote(decoded)
        if once == decoded:
            return
        decoded = once


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parent(path: str) -> str:
    return path.rpartition("/")[0]


# -- names -----------------------------------------------------------------------------

# oxen-server's rule for a namespace or repository: a single path segment; letters, digits,
# '-', '_' and '.' cover every name on hub.oxen.ai.
_REPO_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
# git's check-ref-format, minus the rarely used parts: '/'-separated components of
# letters, digits and ._-, none starting with '.', no '..' anywhere, not ending in '.lock'.
_BRANCH_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def check_repo_name(what: str, value: str) -> str:
    problem = name_problem(value, what)
    if problem is not None:
        raise NameRefused(what, problem)
    if not _REPO_NAME.match(value) or value in (".", ".."):
        raise InvalidName(
            what,
            value,
            "use 1-100 letters, digits, '-', '_' or '.', not starting with '.' or '-'",
        )
    return value


def check_branch_name(value: str) -> str:
    problem = name_problem(value, "branch name", path=True)
    if problem is not None:
        raise NameRefused("branch name", problem)
    parts = value.split("/")
    if (
        not value
        or len(value) > 200
        or ".." in value
        or any(not _BRANCH_PART.match(p) or p.endswith(".lock") for p in parts)
    ):
        raise InvalidName(
            "branch name",
            value,
            "use '/'-separated parts of letters, digits, '.', '-' or '_' (up to 200"
            " characters), no part starting with '.' or ending in '.lock'",
        )
    return value
