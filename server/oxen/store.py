"""Oxen repositories: commits, branches and file trees in SQLite; file bytes in :mod:`.blobs`.

The rules (the backend, :mod:`.backend`, calls these; the provider only parses and renders):

- A repository is (tenant, namespace, name): the same ``ns/repo`` under two tenants is two
  repositories, and every method takes a :class:`Repo` from :meth:`OxenStore.get_repo`,
  which is where the tenant is checked.
- A commit stores its whole tree (path -> blob, one row per file), so any older revision
  still reads its own bytes, even after the branch moved on or the branch was deleted.
- A branch is a pointer moved by compare-and-swap inside one write transaction.
  :meth:`OxenStore.commit_files` always builds on the branch's *current* head, so two
  concurrent commits to one branch both land, one the parent of the other.
  When the caller names ``expected_parent`` (the commit its change was computed from) and
  the branch has moved since, the change is rebased onto the head if no path it touches
  changed in between; if one did, :class:`~.errors.CommitConflict` (409) is raised instead
  of silently replacing someone else's newer version. Without ``expected_parent`` a commit
  is a plain upload: the last writer of a path wins, and history keeps both versions.
- An upload into a repository without commits creates the branch it names (oxen-server's
  ``handle_initial_put_empty_repo``); otherwise the branch must exist.
- Pages are numbered from 1; ``total_pages`` is ``ceil(total_entries / page_size)``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import aiosqlite
import xxhash

from ..db import Database
from .blobs import Blob, BlobStore
from .errors import (
    BranchExists,
    BranchNotFound,
    CommitConflict,
    NotADirectory,
    PathIsDirectory,
    PathNotFound,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
)
from .filetypes import FileType, classify_dir, extension
from .merkle import TreeFile
from .paths import check_branch_name, check_repo_name, clean_path, join, parent

DEFAULT_BRANCH = "main"
INITIAL_MESSAGE = "Initial commit"
DEFAULT_PAGE_SIZE = 100
# Upper bound on a page: a listing of 10,000 entries is ~5 MB of JSON.
MAX_PAGE_SIZE = 10_000
# Compare-and-swap attempts before giving up; inside one BEGIN IMMEDIATE transaction the
# branch cannot move, so a second attempt only happens with another process on the file.
_CAS_ATTEMPTS = 5

T = TypeVar("T")


class _Tx(Protocol):
    """What this module uses of a write transaction (the core's ``Database.transaction()``
    yields one; a bare aiosqlite connection fits too)."""

    def execute(self, sql: str, params: Iterable[Any] = ..., /) -> Any: ...

    async def executemany(self, sql: str, params: Iterable[Iterable[Any]], /) -> Any: ...


def rfc3339_now() -> str:
    """A commit timestamp: RFC 3339 UTC to the second (what ``time::serde::rfc3339`` parses)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Repo:
    id: int
    tenant: str
    namespace: str
    name: str
    created_at: str


@dataclass(frozen=True)
class Commit:
    id: str
    parent_ids: tuple[str, ...]
    message: str
    author: str
    email: str
    timestamp: str
    # Distance from the root commit: orders commits that share a timestamp second.
    generation: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Oxen's ``Commit``: ``{id, parent_ids, message, author, email, timestamp}``."""
        return {
            "id": self.id,
            "parent_ids": list(self.parent_ids),
            "message": self.message,
            "author": self.author,
            "email": self.email,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True)
class Branch:
    name: str
    commit_id: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "commit_id": self.commit_id}


@dataclass(frozen=True)
class Revision:
    """A resolved ``{rev}`` (and, from :meth:`OxenStore.resolve_resource`, a path under it)."""

    commit: Commit
    branch: Branch | None
    path: str = ""

    @property
    def version(self) -> str:
        """What the client named: the branch name, else the commit id."""
        return self.branch.name if self.branch else self.commit.id

    def resource_json(self, path: str | None = None) -> dict[str, Any]:
        """Oxen's ``ParsedResourceView``: workspace, commit, branch, path, version, resource."""
        p = self.path if path is None else path
        return {
            "workspace": None,
            "commit": self.commit.to_json(),
            "branch": self.branch.to_json() if self.branch else None,
            "path": p,
            "version": self.version,
            "resource": join(self.version, p),
        }


@dataclass(frozen=True)
class Entry:
    """A file or folder at a revision: what a metadata entry describes."""

    path: str
    is_dir: bool
    hash: str
    size: int
    file_type: FileType
    latest_commit: Commit | None
    blob_key: str | None = None  # None for folders

    @property
    def filename(self) -> str:
        return self.path.rpartition("/")[2]

    def metadata_entry(self, revision: Revision | None = None) -> dict[str, Any]:
        """Oxen's ``MetadataEntry``, exactly its 11 fields (the client denies unknown ones).

        ``metadata`` is left ``None`` (Oxen fills per-type details such as a table's schema;
        the client treats it as optional).
        """
        return {
            "filename": self.filename,
            "hash": self.hash,
            "is_dir": self.is_dir,
            "latest_commit": self.latest_commit.to_json() if self.latest_commit else None,
            "resource": revision.resource_json(self.path) if revision else None,
            "size": self.size,
            "data_type": self.file_type.data_type,
            "mime_type": self.file_type.mime_type,
            "extension": self.file_type.extension,
            "metadata": None,
            "is_queryable": True if self.file_type.is_tabular else None,
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    page_number: int
    page_size: int
    total_entries: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_entries / self.page_size)


@dataclass(frozen=True)
class DirListing:
    dir: Entry
    revision: Revision
    entries: Page[Entry]


@dataclass
class _Row:
    path: str
    blob_key: str
    hash: str
    size: int
    data_type: str
    mime_type: str
    last_commit_id: str


@dataclass
class _Tree:
    """A commit's files, loaded for one write (thousands of rows: one SELECT, ~5 ms)."""

    rows: dict[str, _Row] = field(default_factory=dict)


def _dirs_of(paths: set[str]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        p = path
        while p := parent(p):
            if p in out:
                break
            out.add(p)
    return out


def page_bounds(page: int, page_size: int) -> tuple[int, int]:
    """Normalise 1-based ``page``/``page_size`` (Oxen's defaults: 1 and 100)."""
    page = max(1, page)
    page_size = min(max(1, page_size), MAX_PAGE_SIZE)
    return page, page_size


# -- the store -------------------------------------------------------------------------


class OxenStore:
    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.blobs = BlobStore(data_dir)

    # repositories

    async def create_repo(
        self,
        tenant: str,
        namespace: str,
        name: str,
        files: Mapping[str, Blob] | None = None,
        author: str = "",
        email: str = "",
        message: str = INITIAL_MESSAGE,
        types: Mapping[str, FileType] | None = None,
    ) -> tuple[Repo, Commit | None]:
        """Create a repository; with ``files``, also its first commit on ``main``.

        ``files`` maps paths to blobs already in :attr:`blobs` (POST /api/repos with
        ``files: [{path, contents, user}]``: the backend stores each ``contents`` as a
        blob and passes the first ``user``'s name and email); ``types`` as for
        :meth:`commit_files`.
        """
        check_repo_name("namespace", namespace)
        check_repo_name("repository name", name)
        changes = _clean_changes(files or {})
        types = self._types(changes, types)
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT 1 FROM oxen_repos WHERE tenant = ? AND namespace = ? AND name = ?",
                (tenant, namespace, name),
            ) as cur:
                if await cur.fetchone():
                    raise RepoExists(namespace, name)
            cur = await conn.execute(
                "INSERT INTO oxen_repos (tenant, namespace, name, created_at) VALUES (?, ?, ?, ?)",
                (tenant, namespace, name, rfc3339_now()),
            )
            assert cur.lastrowid is not None
            repo = Repo(cur.lastrowid, tenant, namespace, name, rfc3339_now())
            commit = None
            if changes:
                commit = await self._write_commit(
                    conn, repo, None, _Tree(), changes, types, author, email, message
                )
                await conn.execute(
                    "INSERT INTO oxen_branches (repo_id, name, commit_id) VALUES (?, ?, ?)",
                    (repo.id, DEFAULT_BRANCH, commit.id),
                )
        return repo, commit

    async def get_repo(self, tenant: str, namespace: str, name: str) -> Repo:
        row = await self.db.fetchone(
            "SELECT * FROM oxen_repos WHERE tenant = ? AND namespace = ? AND name = ?",
            (tenant, namespace, name),
        )
        if row is None:
            raise RepoNotFound(namespace, name)
        return _repo(row)

    async def repo_by_id(self, repo_id: int) -> Repo | None:
        """A repository by its internal id (for jobs, which already checked the tenant)."""
        row = await self.db.fetchone("SELECT * FROM oxen_repos WHERE id = ?", (repo_id,))
        return _repo(row) if row else None

    async def list_repos(self, tenant: str, namespace: str | None = None) -> list[Repo]:
        rows = await self.db.fetchall(
            "SELECT * FROM oxen_repos WHERE tenant = ? AND (? IS NULL OR namespace = ?)"
            " ORDER BY namespace, name",
            (tenant, namespace, namespace),
        )
        return [_repo(r) for r in rows]

    async def delete_repo(self, tenant: str, namespace: str, name: str) -> None:
        """Delete the repository's rows; its blobs go at the next :meth:`collect_blobs`."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM oxen_repos WHERE tenant = ? AND namespace = ? AND name = ?",
                (tenant, namespace, name),
            )
            if cur.rowcount == 0:
                raise RepoNotFound(namespace, name)

    async def is_empty(self, repo: Repo) -> bool:
        row = await self.db.fetchone(
            "SELECT 1 FROM oxen_commits WHERE repo_id = ? LIMIT 1", (repo.id,)
        )
        return row is None

    async def latest_commit(self, repo: Repo) -> Commit | None:
        """The head of ``main``, else the newest commit of any branch (None when empty)."""
        row = await self.db.fetchone(
            "SELECT c.* FROM oxen_branches b JOIN oxen_commits c"
            " ON c.repo_id = b.repo_id AND c.id = b.commit_id WHERE b.repo_id = ?"
            " ORDER BY b.name = ? DESC, c.generation DESC, c.timestamp DESC LIMIT 1",
            (repo.id, DEFAULT_BRANCH),
        )
        return _commit(row) if row else None

    async def referenced_blobs(self) -> set[str]:
        """The blob keys some commit of some repository refers to (the rest may go)."""
        rows = await self.db.fetchall("SELECT DISTINCT blob_key FROM oxen_tree_entries")
        return {r["blob_key"] for r in rows}

    async def collect_blobs(self, min_age_s: float = 3600.0) -> int:
        """Remove blobs no commit of any repository refers to (after deletes), here (the
        backend does the same in a worker: one stat per blob on disk)."""
        return self.blobs.collect(await self.referenced_blobs(), min_age_s)

    # branches

    async def list_branches(self, repo: Repo) -> list[Branch]:
        rows = await self.db.fetchall(
            "SELECT name, commit_id FROM oxen_branches WHERE repo_id = ? ORDER BY name",
            (repo.id,),
        )
        return [Branch(r["name"], r["commit_id"]) for r in rows]

    async def get_branch(self, repo: Repo, name: str) -> Branch:
        row = await self.db.fetchone(
            "SELECT name, commit_id FROM oxen_branches WHERE repo_id = ? AND name = ?",
            (repo.id, name),
        )
        if row is None:
            raise BranchNotFound(name)
        return Branch(row["name"], row["commit_id"])

    async def create_branch(
        self,
        repo: Repo,
        new_name: str,
        *,
        from_name: str | None = None,
        commit_id: str | None = None,
        exist_ok: bool = False,
    ) -> tuple[Branch, bool]:
        """Create ``new_name`` at ``from_name``'s head or at ``commit_id``.

        Returns ``(branch, created)``.

        With neither, the new branch starts at ``main``. oxen-server answers an existing
        name with that branch (``resource_found``): pass ``exist_ok=True`` for that,
        otherwise :class:`BranchExists`.
        """
        check_branch_name(new_name)
        async with self.db.transaction() as conn:
            existing = await _branch_head(conn, repo, new_name)
            if existing is not None:
                if exist_ok:
                    return Branch(new_name, existing), False
                raise BranchExists(new_name)
            if commit_id is not None:
                if await _commit_row(conn, repo, commit_id) is None:
                    raise RevisionNotFound(commit_id)
                target = commit_id
            else:
                source = from_name or DEFAULT_BRANCH
                head = await _branch_head(conn, repo, source)
                if head is None:
                    raise BranchNotFound(source)
                target = head
            await conn.execute(
                "INSERT INTO oxen_branches (repo_id, name, commit_id) VALUES (?, ?, ?)",
                (repo.id, new_name, target),
            )
        return Branch(new_name, target), True

    async def delete_branch(self, repo: Repo, name: str) -> Branch:
        """Delete a branch pointer (its commits stay readable by id)."""
        async with self.db.transaction() as conn:
            head = await _branch_head(conn, repo, name)
            if head is None:
                raise BranchNotFound(name)
            await conn.execute(
                "DELETE FROM oxen_branches WHERE repo_id = ? AND name = ?", (repo.id, name)
            )
        return Branch(name, head)

    # revisions

    async def get_commit(self, repo: Repo, commit_id: str) -> Commit:
        row = await self.db.fetchone(
            "SELECT * FROM oxen_commits WHERE repo_id = ? AND id = ?", (repo.id, commit_id)
        )
        if row is None:
            raise RevisionNotFound(commit_id)
        return _commit(row)

    async def resolve(self, repo: Repo, rev: str) -> Revision:
        """A branch name (first) or a full commit id -> its commit."""
        row = await self.db.fetchone(
            "SELECT c.*, b.name AS branch_name FROM oxen_branches b JOIN oxen_commits c"
            " ON c.repo_id = b.repo_id AND c.id = b.commit_id WHERE b.repo_id = ? AND b.name = ?",
            (repo.id, rev),
        )
        if row is not None:
            return Revision(_commit(row), Branch(rev, row["id"]))
        row = await self.db.fetchone(
            "SELECT * FROM oxen_commits WHERE repo_id = ? AND id = ?", (repo.id, rev)
        )
        if row is None:
            raise RevisionNotFound(rev)
        return Revision(_commit(row), None)

    async def resolve_resource(self, repo: Repo, resource: str) -> Revision:
        """Split ``{rev}/{path}`` (a URL's tail) where ``rev`` may itself contain '/'.

        Like oxen-server's ``parse_resource``: the longest leading run of segments that
        names a branch wins, else the first segment must be a commit id. The path part
        goes through :func:`clean_path` (empty = the top folder).
        """
        segments = resource.strip("/").split("/")
        branches = {b.name for b in await self.list_branches(repo)}
        for n in range(len(segments), 0, -1):
            candidate = "/".join(segments[:n])
            if candidate in branches:
                rev = await self.resolve(repo, candidate)
                path = clean_path("/".join(segments[n:]), allow_root=True)
                return Revision(rev.commit, rev.branch, path)
        rev = await self.resolve(repo, segments[0])
        path = clean_path("/".join(segments[1:]), allow_root=True)
        return Revision(rev.commit, None, path)

    async def history(
        self, repo: Repo, rev: str, page: int = 1, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Page[Commit]:
        """Commits reachable from ``rev``, newest first."""
        start = (await self.resolve(repo, rev)).commit.id
        page, page_size = page_bounds(page, page_size)
        ancestors = (
            "WITH RECURSIVE anc(id) AS (SELECT ? UNION SELECT p.parent_id"
            " FROM oxen_commit_parents p JOIN anc ON p.commit_id = anc.id WHERE p.repo_id = ?)"
        )
        total = await self.db.fetchone(
            f"{ancestors} SELECT COUNT(*) AS n FROM anc", (start, repo.id)
        )
        rows = await self.db.fetchall(
            f"{ancestors} SELECT c.* FROM oxen_commits c JOIN anc ON c.id = anc.id"
            " WHERE c.repo_id = ? ORDER BY c.generation DESC, c.timestamp DESC, c.id"
            " LIMIT ? OFFSET ?",
            (start, repo.id, repo.id, page_size, (page - 1) * page_size),
        )
        return Page([_commit(r) for r in rows], page, page_size, int(total["n"]) if total else 0)

    # files and folders

    async def entry(self, repo: Repo, rev: str | Revision, path: str) -> Entry:
        """The file or folder at ``path`` (``""`` = the top folder)."""
        revision = rev if isinstance(rev, Revision) else await self.resolve(repo, rev)
        path = clean_path(path, allow_root=True)
        cid = revision.commit.id
        if path:
            row = await self.db.fetchone(
                "SELECT * FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ? AND path = ?",
                (repo.id, cid, path),
            )
            if row is not None:
                commit = await self.get_commit(repo, row["last_commit_id"])
                return _file_entry(_row(row), commit)
        rows = await self._rows_under(repo, cid, path)
        if not rows and path:
            raise PathNotFound(path, revision.version)
        return await self._dir_entry(repo, path, rows)

    async def list_dir(
        self,
        repo: Repo,
        rev: str | Revision,
        path: str = "",
        page: int = 1,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> DirListing:
        """A folder's direct children, folders first, then by name (oxen-server's order)."""
        revision = rev if isinstance(rev, Revision) else await self.resolve(repo, rev)
        path = clean_path(path, allow_root=True)
        page, page_size = page_bounds(page, page_size)
        rows = await self._rows_under(repo, revision.commit.id, path)
        if not rows and path:
            is_file = await self.db.fetchone(
                "SELECT 1 FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ? AND path = ?",
                (repo.id, revision.commit.id, path),
            )
            if is_file:
                raise NotADirectory(path)
            raise PathNotFound(path, revision.version)
        files: list[_Row] = []
        subdirs: dict[str, list[_Row]] = {}
        cut = len(path) + 1 if path else 0
        for r in rows:
            rest = r.path[cut:]
            head, slash, _ = rest.partition("/")
            if slash:
                subdirs.setdefault(join(path, head), []).append(r)
            else:
                files.append(r)
        children: list[tuple[bool, str, Any]] = [(True, d, rs) for d, rs in subdirs.items()]
        children += [(False, f.path, f) for f in files]
        children.sort(key=lambda c: (not c[0], c[1].rpartition("/")[2]))
        window = children[(page - 1) * page_size : page * page_size]
        commits = await self._commits(repo, _latest_ids(rows))
        entries: list[Entry] = []
        for is_dir, child_path, payload in window:
            if is_dir:
                entries.append(_dir_entry(child_path, payload, commits))
            else:
                entries.append(_file_entry(payload, commits[payload.last_commit_id]))
        return DirListing(
            _dir_entry(path, rows, commits),
            revision,
            Page(entries, page, page_size, len(children)),
        )

    async def file_blob(self, repo: Repo, rev: str | Revision, path: str) -> Entry:
        """The file at ``path`` (for GET .../file/{rev}/{path}); open it with
        ``store.blobs.open(entry.blob_key)`` or stream ``store.blobs.iter_chunks``."""
        revision = rev if isinstance(rev, Revision) else await self.resolve(repo, rev)
        entry = await self.entry(repo, revision, path)
        if entry.is_dir:
            raise PathIsDirectory(entry.path)
        return entry

    async def files_under(self, repo: Repo, revision: Revision) -> list[tuple[str, str, int]]:
        """Every file under the folder ``revision.path`` (``""`` = the whole repository) as
        (path relative to the folder, blob key, size), in path order."""
        path = clean_path(revision.path, allow_root=True)
        rows = await self._rows_under(repo, revision.commit.id, path)
        if not rows and path:
            await self.entry(repo, revision, path)  # PathNotFound when missing
            raise NotADirectory(path)
        cut = len(path) + 1 if path else 0
        return [(r.path[cut:], r.blob_key, r.size) for r in rows]

    async def tree_files(
        self, repo: Repo, revision: Revision
    ) -> tuple[list[TreeFile], dict[str, int]]:
        """Every file under the folder ``revision.path`` (paths relative to it, in path
        order) and a rank of the commits that last changed them (higher = newer): what a
        Merkle tree download of the folder is built from (:mod:`.merkle`)."""
        path = clean_path(revision.path, allow_root=True)
        rows = await self._rows_under(repo, revision.commit.id, path)
        if not rows and path:
            await self.entry(repo, revision, path)  # PathNotFound when missing
            raise NotADirectory(path)
        cut = len(path) + 1 if path else 0
        commits = await self._commits(repo, _latest_ids(rows))
        order = sorted(commits.values(), key=lambda c: (c.generation, c.timestamp, c.id))
        rank = {c.id: i for i, c in enumerate(order)}
        out = [
            TreeFile(r.path[cut:], r.hash, r.size, r.data_type, r.mime_type, r.last_commit_id)
            for r in rows
        ]
        return out, rank

    async def blobs_by_hash(self, repo: Repo, hashes: Sequence[str]) -> dict[str, str]:
        """``{hash: blob key}`` for the content hashes some commit of ``repo`` holds (the
        client's ``QUERY .../versions``). Scoped to the repository: a hash never reaches
        another repository's bytes. No index on hash: each 500 hashes is one scan of the
        repository's tree rows (about 1 s per 5M rows)."""
        out: dict[str, str] = {}
        wanted = sorted(set(hashes))
        # 500 a statement keeps under SQLite's default 999-parameter limit of old builds.
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                "SELECT hash, MIN(blob_key) AS blob_key FROM oxen_tree_entries"
                f" WHERE repo_id = ? AND hash IN ({marks}) GROUP BY hash",
                (repo.id, *chunk),
            )
            out.update((r["hash"], r["blob_key"]) for r in rows)
        return out

    async def read_file(self, repo: Repo, rev: str | Revision, path: str) -> bytes:
        """A whole file in memory: for small files and tests; stream big ones."""
        entry = await self.file_blob(repo, rev, path)
        assert entry.blob_key is not None
        return self.blobs.read_bytes(entry.blob_key)

    # commits

    async def commit_files(
        self,
        repo: Repo,
        branch: str,
        files: Mapping[str, Blob | None],
        author: str,
        email: str,
        message: str,
        expected_parent: str | None = None,
        types: Mapping[str, FileType] | None = None,
    ) -> Commit:
        """Commit ``files`` (path -> blob, or None to delete the path) on top of ``branch``.

        See the module docstring for the rebase rule. The blobs must already be in
        :attr:`blobs` (write them before calling: uploads stay off the write lock).
        ``types``: each new file's type, from whoever stored it (the backend's tasks
        classify a file as they write it); a file without one is classified here.
        """
        changes = _clean_changes(files)
        types = self._types(changes, types)
        for _ in range(_CAS_ATTEMPTS):
            try:
                return await self._commit_once(
                    repo, branch, changes, types, author, email, message, expected_parent
                )
            except _Retry:
                continue
        raise RuntimeError(
            f"branch {branch} moved during each of {_CAS_ATTEMPTS} commit attempts; retry"
        )

    async def _commit_once(
        self,
        repo: Repo,
        branch: str,
        changes: Mapping[str, Blob | None],
        types: Mapping[str, FileType],
        author: str,
        email: str,
        message: str,
        expected_parent: str | None,
    ) -> Commit:
        async with self.db.transaction() as conn:
            if await _fetch(conn, "SELECT 1 FROM oxen_repos WHERE id = ?", (repo.id,)) is None:
                raise RepoNotFound(repo.namespace, repo.name)
            head = await _branch_head(conn, repo, branch)
            if head is None:
                if await _fetch(
                    conn, "SELECT 1 FROM oxen_commits WHERE repo_id = ? LIMIT 1", (repo.id,)
                ):
                    raise BranchNotFound(branch)
                check_branch_name(branch)
                tree = _Tree()
            else:
                tree = await _load_tree(conn, repo, head)
                if expected_parent is not None and expected_parent != head:
                    await _check_rebase(conn, repo, branch, expected_parent, tree, changes)
            commit = await self._write_commit(
                conn, repo, head, tree, changes, types, author, email, message
            )
            if head is None:
                cur = await conn.execute(
                    "INSERT OR IGNORE INTO oxen_branches (repo_id, name, commit_id)"
                    " VALUES (?, ?, ?)",
                    (repo.id, branch, commit.id),
                )
            else:
                # The compare-and-swap: only moves the branch if it still points at head.
                cur = await conn.execute(
                    "UPDATE oxen_branches SET commit_id = ?"
                    " WHERE repo_id = ? AND name = ? AND commit_id = ?",
                    (commit.id, repo.id, branch, head),
                )
            if cur.rowcount != 1:
                # Moved by another process sharing the file: roll back, rebuild on the new head.
                raise _Retry
        return commit

    async def _write_commit(
        self,
        conn: _Tx,
        repo: Repo,
        head: str | None,
        tree: _Tree,
        changes: Mapping[str, Blob | None],
        types: Mapping[str, FileType],
        author: str,
        email: str,
        message: str,
    ) -> Commit:
        _check_shape(tree, changes)
        parents = (head,) if head else ()
        timestamp = rfc3339_now()
        commit_id = _commit_id(parents, message, author, email, timestamp)
        generation = 0
        if head:
            row = await _commit_row(conn, repo, head)
            assert row is not None
            generation = int(row["generation"]) + 1
        await conn.execute(
            "INSERT INTO oxen_commits (repo_id, id, parent_ids, message, author, email,"
            " timestamp, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                repo.id,
                commit_id,
                json.dumps(list(parents)),
                message,
                author,
                email,
                timestamp,
                generation,
            ),
        )
        for p in parents:
            await conn.execute(
                "INSERT INTO oxen_commit_parents (repo_id, commit_id, parent_id) VALUES (?, ?, ?)",
                (repo.id, commit_id, p),
            )
        if head:
            # Copy the parent's tree in one statement (no Python round trip per file).
            await conn.execute(
                "INSERT INTO oxen_tree_entries (repo_id, commit_id, path, blob_key, hash, size,"
                " data_type, mime_type, last_commit_id) SELECT repo_id, ?, path, blob_key, hash,"
                " size, data_type, mime_type, last_commit_id FROM oxen_tree_entries"
                " WHERE repo_id = ? AND commit_id = ?",
                (commit_id, repo.id, head),
            )
        deletes = [(repo.id, commit_id, p) for p, b in changes.items() if b is None]
        await conn.executemany(
            "DELETE FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ? AND path = ?",
            deletes,
        )
        upserts = []
        for path, blob in changes.items():
            if blob is None:
                continue
            old = tree.rows.get(path)
            if old is not None and old.blob_key == blob.key:
                continue  # same bytes: keep the commit that last really changed it
            ft = types[path]
            upserts.append(
                (
                    repo.id,
                    commit_id,
                    path,
                    blob.key,
                    blob.hash,
                    blob.size,
                    ft.data_type,
                    ft.mime_type,
                    commit_id,
                )
            )
        await conn.executemany(
            "INSERT OR REPLACE INTO oxen_tree_entries (repo_id, commit_id, path, blob_key, hash,"
            " size, data_type, mime_type, last_commit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            upserts,
        )
        return Commit(commit_id, parents, message, author, email, timestamp, generation)

    def _types(
        self, changes: Mapping[str, Blob | None], given: Mapping[str, FileType] | None
    ) -> dict[str, FileType]:
        """Each new file's type: as given, else classified here from its first 4 KiB
        (4 KiB a file: the store's own callers and tests commit a few small files), which
        also proves the blob is in the store before anything refers to it."""
        types = {clean_path(path): t for path, t in (given or {}).items()}
        missing = {
            path: blob.key
            for path, blob in changes.items()
            if blob is not None and path not in types
        }
        if missing:
            types.update(self.blobs.classify(missing))
        return types

    # helpers

    async def _rows_under(self, repo: Repo, commit_id: str, folder: str) -> list[_Row]:
        if folder:
            # '0' is the character after '/', so [folder/, folder0) is exactly folder/**.
            rows = await self.db.fetchall(
                "SELECT * FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ?"
                " AND path >= ? AND path < ? ORDER BY path",
                (repo.id, commit_id, folder + "/", folder + "0"),
            )
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ? ORDER BY path",
                (repo.id, commit_id),
            )
        return [_row(r) for r in rows]

    async def _commits(self, repo: Repo, ids: set[str]) -> dict[str, Commit]:
        out: dict[str, Commit] = {}
        ordered = sorted(ids)
        # 500 ids a statement keeps under SQLite's default 999-parameter limit of old builds.
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.fetchall(
                f"SELECT * FROM oxen_commits WHERE repo_id = ? AND id IN ({marks})",
                (repo.id, *chunk),
            )
            out.update((r["id"], _commit(r)) for r in rows)
        return out

    async def _dir_entry(self, repo: Repo, path: str, rows: list[_Row]) -> Entry:
        commits = await self._commits(repo, _latest_ids(rows))
        return _dir_entry(path, rows, commits)


class _Retry(Exception):
    """Raised inside the transaction to roll it back before the next CAS attempt."""


# -- row mapping and small SQL helpers -------------------------------------------------


def _repo(row: aiosqlite.Row) -> Repo:
    return Repo(row["id"], row["tenant"], row["namespace"], row["name"], row["created_at"])


def _commit(row: aiosqlite.Row) -> Commit:
    return Commit(
        row["id"],
        tuple(json.loads(row["parent_ids"])),
        row["message"],
        row["author"],
        row["email"],
        row["timestamp"],
        int(row["generation"]),
    )


def _row(row: aiosqlite.Row) -> _Row:
    return _Row(
        row["path"],
        row["blob_key"],
        row["hash"],
        int(row["size"]),
        row["data_type"],
        row["mime_type"],
        row["last_commit_id"],
    )


def _file_entry(row: _Row, commit: Commit | None) -> Entry:
    ft = FileType(row.data_type, row.mime_type, extension(row.path))
    return Entry(row.path, False, row.hash, row.size, ft, commit, row.blob_key)


def _latest_ids(rows: Sequence[_Row]) -> set[str]:
    return {r.last_commit_id for r in rows}


def _dir_entry(path: str, rows: Sequence[_Row], commits: Mapping[str, Commit]) -> Entry:
    # A folder's hash: xxh3-128 over its files' relative paths and hashes, in path order
    # (deterministic and changes when anything inside does; not Oxen's Merkle node hash).
    h = xxhash.xxh3_128()
    cut = len(path) + 1 if path else 0
    latest: Commit | None = None
    for r in sorted(rows, key=lambda r: r.path):
        h.update(f"{r.path[cut:]}\0{r.hash}\n".encode())
        c = commits.get(r.last_commit_id)
        if c is not None and (latest is None or _newer(c, latest)):
            latest = c
    return Entry(
        path, True, format(h.intdigest(), "x"), sum(r.size for r in rows), classify_dir(), latest
    )


def _newer(a: Commit, b: Commit) -> bool:
    return (a.generation, a.timestamp, a.id) > (b.generation, b.timestamp, b.id)


async def _fetch(conn: _Tx, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
    async with conn.execute(sql, tuple(params)) as cur:
        return await cur.fetchone()


async def _branch_head(conn: _Tx, repo: Repo, name: str) -> str | None:
    row = await _fetch(
        conn,
        "SELECT commit_id FROM oxen_branches WHERE repo_id = ? AND name = ?",
        (repo.id, name),
    )
    return row["commit_id"] if row else None


async def _commit_row(conn: _Tx, repo: Repo, commit_id: str) -> aiosqlite.Row | None:
    return await _fetch(
        conn, "SELECT * FROM oxen_commits WHERE repo_id = ? AND id = ?", (repo.id, commit_id)
    )


async def _load_tree(conn: _Tx, repo: Repo, commit_id: str) -> _Tree:
    async with conn.execute(
        "SELECT * FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ?",
        (repo.id, commit_id),
    ) as cur:
        rows = await cur.fetchall()
    return _Tree({r["path"]: _row(r) for r in rows})


async def _check_rebase(
    conn: _Tx,
    repo: Repo,
    branch: str,
    base: str,
    head_tree: _Tree,
    changes: Mapping[str, Blob | None],
) -> None:
    """Raise CommitConflict if a changed path differs between ``base`` and the head.

    A path whose head version already equals what this commit writes is not a conflict
    (the same change made twice).
    """
    if await _commit_row(conn, repo, base) is None:
        raise RevisionNotFound(base)
    marks = ",".join("?" * len(changes))
    async with conn.execute(
        f"SELECT path, blob_key FROM oxen_tree_entries WHERE repo_id = ? AND commit_id = ?"
        f" AND path IN ({marks})",
        (repo.id, base, *changes),
    ) as cur:
        base_keys = {r["path"]: r["blob_key"] for r in await cur.fetchall()}
    conflicts = []
    for path, blob in changes.items():
        head_row = head_tree.rows.get(path)
        head_key = head_row.blob_key if head_row else None
        ours = blob.key if blob else None
        if base_keys.get(path) != head_key and head_key != ours:
            conflicts.append(path)
    if conflicts:
        raise CommitConflict(branch, sorted(conflicts))


def _clean_changes(files: Mapping[str, Blob | None]) -> dict[str, Blob | None]:
    out: dict[str, Blob | None] = {}
    for raw, blob in files.items():
        out[clean_path(raw)] = blob
    return out


def _check_shape(tree: _Tree, changes: Mapping[str, Blob | None]) -> None:
    """A path cannot be both a file and a folder in the resulting tree."""
    for path, blob in changes.items():
        if blob is None and path not in tree.rows:
            raise PathNotFound(path, "the branch head")
    final = {p for p in tree.rows if changes.get(p, tree.rows[p]) is not None}
    final |= {p for p, b in changes.items() if b is not None}
    dirs = _dirs_of(final)
    for path, blob in changes.items():
        if blob is None:
            continue
        if path in dirs:
            raise PathIsDirectory(path)
        p = path
        while p := parent(p):
            if p in final:
                raise NotADirectory(p)


def _commit_id(
    parents: Sequence[str], message: str, author: str, email: str, timestamp: str
) -> str:
    # xxh3-128 hex, like Oxen's ids; a random nonce keeps two identical commits in the
    # same second apart.
    payload = json.dumps([list(parents), message, author, email, timestamp, uuid.uuid4().hex])
    return format(xxhash.xxh3_128_intdigest(payload.encode()), "x")
