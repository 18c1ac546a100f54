"""The Oxen repository store: tenancy, commits and branches, revisions, listings, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from evaldock.server.oxen.blobs import Blob, BlobNotFound
from evaldock.server.oxen.errors import (
    BranchExists,
    BranchNotFound,
    CommitConflict,
    InvalidName,
    InvalidPath,
    NotADirectory,
    PathIsDirectory,
    PathNotFound,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
)
from evaldock.server.oxen.store import OxenStore

from .helpers import blob, open_store

ENTRY_FIELDS = {
    "filename",
    "hash",
    "is_dir",
    "latest_commit",
    "resource",
    "size",
    "data_type",
    "mime_type",
    "extension",
    "metadata",
    "is_queryable",
}


def run(tmp_path: Path, body: Callable[[OxenStore], Awaitable[None]]) -> None:
    async def main() -> None:
        async with open_store(tmp_path) as store:
            await body(store)

    asyncio.run(main())


def test_create_get_and_tenancy(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, first = await s.create_repo("t1", "ox", "data", {"README.md": blob(s, "# data\n")})
        assert first is not None and first.message == "Initial commit"
        assert first.parent_ids == ()
        assert (await s.get_branch(repo, "main")).commit_id == first.id
        assert not await s.is_empty(repo)
        # The same ns/name under another tenant is another repository.
        other, none = await s.create_repo("t2", "ox", "data")
        assert none is None and other.id != repo.id
        assert await s.is_empty(other)
        assert await s.latest_commit(other) is None
        with pytest.raises(RevisionNotFound):
            await s.resolve(other, "main")
        with pytest.raises(RepoExists):
            await s.create_repo("t1", "ox", "data")
        with pytest.raises(RepoNotFound):
            await s.get_repo("t3", "ox", "data")
        assert [r.name for r in await s.list_repos("t1")] == ["data"]
        await s.delete_repo("t2", "ox", "data")
        with pytest.raises(RepoNotFound):
            await s.get_repo("t2", "ox", "data")
        assert (await s.read_file(repo, "main", "README.md")) == b"# data\n"
        with pytest.raises(InvalidName):
            await s.create_repo("t1", "ox", "../etc")

    run(tmp_path, body)


def test_first_upload_to_empty_repo_creates_the_branch(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, _ = await s.create_repo("t", "ox", "empty")
        c = await s.commit_files(repo, "main", {"a.txt": blob(s, "a")}, "me", "me@x", "first")
        assert c.parent_ids == ()
        assert (await s.get_branch(repo, "main")).commit_id == c.id
        # Once there are commits, an unknown branch is an error, not a new branch.
        with pytest.raises(BranchNotFound):
            await s.commit_files(repo, "nope", {"b.txt": blob(s, "b")}, "me", "me@x", "m")

    run(tmp_path, body)


def test_old_revision_reads_old_bytes(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, c1 = await s.create_repo("t", "ox", "r", {"d.csv": blob(s, "a\n1\n")}, "me", "e")
        assert c1 is not None
        c2 = await s.commit_files(repo, "main", {"d.csv": blob(s, "a\n2\n")}, "me", "e", "v2")
        assert c2.parent_ids == (c1.id,)
        assert await s.read_file(repo, "main", "d.csv") == b"a\n2\n"
        assert await s.read_file(repo, c1.id, "d.csv") == b"a\n1\n"
        assert await s.read_file(repo, c2.id, "d.csv") == b"a\n2\n"
        # Deleting the branch keeps commits readable by id.
        await s.create_branch(repo, "tmp", from_name="main")
        await s.delete_branch(repo, "tmp")
        assert await s.read_file(repo, c1.id, "d.csv") == b"a\n1\n"
        with pytest.raises(RevisionNotFound):
            await s.read_file(repo, "nope", "d.csv")
        with pytest.raises(PathNotFound):
            await s.read_file(repo, "main", "missing.csv")

    run(tmp_path, body)


def test_two_concurrent_commits_to_one_branch_both_land(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, base = await s.create_repo("t", "ox", "r", {"x": blob(s, "x")}, "me", "e")
        assert base is not None
        a, b = await asyncio.gather(
            s.commit_files(repo, "main", {"a.txt": blob(s, "A")}, "u1", "e", "a", base.id),
            s.commit_files(repo, "main", {"b.txt": blob(s, "B")}, "u2", "e", "b", base.id),
        )
        # One was rebased onto the other; neither change is lost.
        assert {a.parent_ids, b.parent_ids} == {(base.id,), (a.id,)} or {
            a.parent_ids,
            b.parent_ids,
        } == {(base.id,), (b.id,)}
        head = (await s.get_branch(repo, "main")).commit_id
        assert head in (a.id, b.id)
        assert await s.read_file(repo, "main", "a.txt") == b"A"
        assert await s.read_file(repo, "main", "b.txt") == b"B"
        history = await s.history(repo, "main")
        assert history.total_entries == 3

    run(tmp_path, body)


def test_same_path_changed_since_expected_parent_is_a_conflict(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, base = await s.create_repo("t", "ox", "r", {"d.csv": blob(s, "v0")}, "me", "e")
        assert base is not None
        results = await asyncio.gather(
            s.commit_files(repo, "main", {"d.csv": blob(s, "v1")}, "u", "e", "1", base.id),
            s.commit_files(repo, "main", {"d.csv": blob(s, "v2")}, "u", "e", "2", base.id),
            return_exceptions=True,
        )
        conflicts = [r for r in results if isinstance(r, CommitConflict)]
        assert len(conflicts) == 1 and conflicts[0].paths == ["d.csv"]
        assert conflicts[0].http_status == 409
        # The same change made twice is not a conflict.
        winner = await s.read_file(repo, "main", "d.csv")
        same = {"d.csv": blob(s, winner)}
        again = await s.commit_files(repo, "main", same, "u", "e", "3", base.id)
        assert again.id == (await s.get_branch(repo, "main")).commit_id
        # Without expected_parent the last writer wins and history keeps both.
        await s.commit_files(repo, "main", {"d.csv": blob(s, "v9")}, "u", "e", "9")
        assert await s.read_file(repo, "main", "d.csv") == b"v9"

    run(tmp_path, body)


def test_branches(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, c1 = await s.create_repo("t", "ox", "r", {"f": blob(s, "1")}, "me", "e")
        assert c1 is not None
        br, created = await s.create_branch(repo, "feature/x", from_name="main")
        assert created and br.commit_id == c1.id
        same, created = await s.create_branch(repo, "feature/x", from_name="main", exist_ok=True)
        assert not created and same == br
        with pytest.raises(BranchExists):
            await s.create_branch(repo, "feature/x", from_name="main")
        with pytest.raises(BranchNotFound):
            await s.create_branch(repo, "y", from_name="nope")
        with pytest.raises(RevisionNotFound):
            await s.create_branch(repo, "y", commit_id="abc")
        with pytest.raises(InvalidName):
            await s.create_branch(repo, "bad..name", from_name="main")
        c2 = await s.commit_files(repo, "feature/x", {"g": blob(s, "2")}, "me", "e", "g")
        at, _ = await s.create_branch(repo, "at-c1", commit_id=c1.id)
        assert at.commit_id == c1.id
        assert [b.name for b in await s.list_branches(repo)] == ["at-c1", "feature/x", "main"]
        # Branch names with '/' resolve in {rev}/{path} resources: longest branch wins.
        res = await s.resolve_resource(repo, "feature/x/g")
        assert res.commit.id == c2.id and res.path == "g" and res.version == "feature/x"
        res = await s.resolve_resource(repo, f"{c1.id}/f")
        assert res.branch is None and res.path == "f" and res.version == c1.id
        with pytest.raises(InvalidPath):
            await s.resolve_resource(repo, "main/%2e%2e/f")
        deleted = await s.delete_branch(repo, "feature/x")
        assert deleted.commit_id == c2.id
        with pytest.raises(BranchNotFound):
            await s.get_branch(repo, "feature/x")
        with pytest.raises(BranchNotFound):
            await s.delete_branch(repo, "feature/x")

    run(tmp_path, body)


def test_history_pagination(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, _ = await s.create_repo("t", "ox", "r", {"f": blob(s, "0")}, "me", "e")
        ids = []
        for i in range(1, 7):
            c = await s.commit_files(repo, "main", {"f": blob(s, str(i))}, "me", "e", f"c{i}")
            ids.append(c.id)
        p1 = await s.history(repo, "main", page=1, page_size=3)
        assert [c.message for c in p1.items] == ["c6", "c5", "c4"]
        assert (p1.total_entries, p1.total_pages, p1.page_number) == (7, 3, 1)
        p3 = await s.history(repo, "main", page=3, page_size=3)
        assert [c.message for c in p3.items] == ["Initial commit"]
        beyond = await s.history(repo, "main", page=9, page_size=3)
        assert beyond.items == [] and beyond.total_entries == 7
        older = await s.history(repo, ids[1])
        assert [c.message for c in older.items] == ["c2", "c1", "Initial commit"]

    run(tmp_path, body)


def test_dir_listing_entries_and_pagination(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        files = {f"data/f{i:02}.txt": blob(s, f"file {i}") for i in range(5)}
        files["data/sub/deep.csv"] = blob(s, "a,b\n1,2\n")
        files["README.md"] = blob(s, "# hi\n")
        files["img.png"] = blob(s, b"\x89PNG\r\n\x1a\n" + bytes(20))
        files["blob.bin"] = blob(s, bytes(range(256)))
        repo, c1 = await s.create_repo("t", "ox", "r", files, "me", "e")
        assert c1 is not None
        root = await s.list_dir(repo, "main")
        names = [e.filename for e in root.entries.items]
        assert names == ["data", "README.md", "blob.bin", "img.png"]  # folders first
        assert root.dir.is_dir and root.dir.size == sum(b.size for b in files.values())
        page = await s.list_dir(repo, "main", "data", page=2, page_size=2)
        assert [e.filename for e in page.entries.items] == ["f01.txt", "f02.txt"]
        assert (page.entries.total_entries, page.entries.total_pages) == (6, 3)
        assert page.dir.filename == "data"
        first = await s.list_dir(repo, "main", "data/", page=1, page_size=2)
        assert [e.filename for e in first.entries.items] == ["sub", "f00.txt"]

        entry = await s.entry(repo, "main", "data/sub/deep.csv")
        meta = entry.metadata_entry(await s.resolve(repo, "main"))
        assert set(meta) == ENTRY_FIELDS
        assert meta["data_type"] == "tabular" and meta["is_queryable"] is True
        assert meta["mime_type"] == "text/plain" and meta["extension"] == "csv"
        assert meta["latest_commit"]["id"] == c1.id
        assert meta["resource"]["path"] == "data/sub/deep.csv"
        assert meta["resource"]["resource"] == "main/data/sub/deep.csv"
        kinds = {
            e.filename: (e.file_type.data_type, e.file_type.mime_type) for e in root.entries.items
        }
        assert kinds["README.md"] == ("text", "text/markdown")
        assert kinds["img.png"] == ("image", "image/png")
        assert kinds["blob.bin"] == ("binary", "application/octet-stream")
        assert kinds["data"] == ("dir", "inode/directory")
        d = (await s.entry(repo, "main", "data")).metadata_entry()
        assert set(d) == ENTRY_FIELDS and d["is_dir"] is True and d["resource"] is None

        # A change inside a folder moves the folder's hash and latest commit, not others'.
        c2 = await s.commit_files(repo, "main", {"data/f00.txt": blob(s, "new")}, "me", "e", "m")
        after = await s.list_dir(repo, "main")
        by_name = {e.filename: e for e in after.entries.items}
        before = {e.filename: e for e in root.entries.items}
        assert by_name["data"].hash != before["data"].hash
        assert by_name["data"].latest_commit is not None
        assert by_name["data"].latest_commit.id == c2.id
        assert by_name["README.md"].hash == before["README.md"].hash
        assert by_name["README.md"].latest_commit == before["README.md"].latest_commit
        assert after.dir.latest_commit is not None and after.dir.latest_commit.id == c2.id

        with pytest.raises(PathNotFound):
            await s.list_dir(repo, "main", "nope")
        with pytest.raises(NotADirectory):
            await s.list_dir(repo, "main", "README.md")
        with pytest.raises(PathIsDirectory):
            await s.file_blob(repo, "main", "data")

    run(tmp_path, body)


def test_file_and_folder_cannot_share_a_path_and_deletes(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, _ = await s.create_repo("t", "ox", "r", {"a/b.txt": blob(s, "1")}, "me", "e")
        with pytest.raises(PathIsDirectory):
            await s.commit_files(repo, "main", {"a": blob(s, "x")}, "me", "e", "m")
        with pytest.raises(NotADirectory):
            await s.commit_files(repo, "main", {"a/b.txt/c": blob(s, "x")}, "me", "e", "m")
        with pytest.raises(PathNotFound):
            await s.commit_files(repo, "main", {"zzz": None}, "me", "e", "m")
        c = await s.commit_files(repo, "main", {"a/b.txt": None, "a": blob(s, "f")}, "me", "e", "m")
        assert await s.read_file(repo, c.id, "a") == b"f"
        with pytest.raises(InvalidPath):
            await s.commit_files(repo, "main", {"../x": blob(s, "x")}, "me", "e", "m")
        # A failed commit leaves the branch where it was.
        assert (await s.get_branch(repo, "main")).commit_id == c.id

    run(tmp_path, body)


def test_delete_repo_then_collect_blobs(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        keep = blob(s, "shared")
        files = {"x": keep, "y": blob(s, "only")}
        repo, _ = await s.create_repo("t", "ox", "gone", files, "m", "e")
        await s.create_repo("t", "ox", "kept", {"x": keep}, "m", "e")
        await s.delete_repo("t", "ox", "gone")
        with pytest.raises(RepoNotFound):
            await s.delete_repo("t", "ox", "gone")
        with pytest.raises(RepoNotFound):
            await s.commit_files(repo, "main", {"z": keep}, "m", "e", "m")
        assert await s.collect_blobs(min_age_s=0) == 1
        assert s.blobs.exists(keep.key)
        kept = await s.get_repo("t", "ox", "kept")
        assert await s.read_file(kept, "main", "x") == b"shared"

    run(tmp_path, body)


def test_missing_blob_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        repo, c1 = await s.create_repo("t", "ox", "r", {"f": blob(s, "1")}, "me", "e")
        assert c1 is not None
        ghost = Blob("00" * 32, "0", 1)
        with pytest.raises(BlobNotFound):
            await s.commit_files(repo, "main", {"g": ghost}, "me", "e", "m")
        assert (await s.get_branch(repo, "main")).commit_id == c1.id

    run(tmp_path, body)


def test_many_files_in_one_commit_list_in_pages(tmp_path: Path) -> None:
    async def body(s: OxenStore) -> None:
        one = blob(s, "x")
        files = {f"f{i:04}.txt": one for i in range(250)}
        repo, _ = await s.create_repo("t", "ox", "r", files, "me", "e")
        await s.commit_files(repo, "main", {"f0000.txt": blob(s, "y")}, "me", "e", "m")
        pages = [await s.list_dir(repo, "main", "", p, 100) for p in (1, 2, 3)]
        names = [e.filename for pg in pages for e in pg.entries.items]
        assert names == sorted(files)
        assert pages[0].entries.total_pages == 3
        assert await s.read_file(repo, "main", "f0000.txt") == b"y"
        assert await s.read_file(repo, "main", "f0249.txt") == b"x"

    run(tmp_path, body)
