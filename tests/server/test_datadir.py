"""The data directory: created private, older ones tightened, crash leftovers removed."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from evaldock.server import datadir
from evaldock.server.datadir import open_private, prepare_data_dir, private_dir, private_file

LOG = logging.getLogger("evaldock.test.datadir")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def old_layout(root: Path) -> list[Path]:
    """A data directory as earlier versions left it: 0755 directories, 0644 files."""
    root.mkdir()
    files = [
        root / "evaldock.sqlite3",
        root / "evaldock.sqlite3-wal",
        root / "evaldock.sqlite3-shm",
        root / "marqtune" / "datasets" / "d1" / "upload",
    ]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
        os.chmod(f, 0o644)
    for d in (root, *{f.parent for f in files}, root / "marqtune"):
        os.chmod(d, 0o755)
    return files


def test_new_data_dir_is_created_0700(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG.name)
    prepare_data_dir(tmp_path / "a" / "data", LOG)
    assert mode(tmp_path / "a" / "data") == 0o700
    assert "Created the data directory" in caplog.text


def test_old_data_dir_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG.name)
    root = tmp_path / "data"
    files = old_layout(root)
    os.chmod(files[-1], 0o755)  # an executable file keeps its owner bits
    prepare_data_dir(root, LOG)
    assert [mode(f) for f in files] == [0o600, 0o600, 0o600, 0o700]
    for d in (root, root / "marqtune", root / "marqtune" / "datasets", files[-1].parent):
        assert mode(d) == 0o700
    assert "Restricted 8 entries of the data directory" in caplog.text
    caplog.clear()
    prepare_data_dir(root, LOG)  # nothing left to do, nothing logged
    assert caplog.text == ""


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.chmod(outside, 0o644)
    root = tmp_path / "data"
    root.mkdir()
    (root / "link").symlink_to(outside)
    prepare_data_dir(root, LOG)
    assert mode(outside) == 0o644


def test_what_cannot_be_tightened_is_a_warning_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "my data"
    files = old_layout(root)
    real_chmod = os.chmod

    def chmod(path: object, *args: object, **kwargs: object) -> None:
        if str(path).endswith("-wal"):
            raise PermissionError(1, "Operation not permitted", str(path))
        real_chmod(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(datadir.os, "chmod", chmod)
    prepare_data_dir(root, LOG)  # no exception: never refuses to start
    assert mode(files[1]) == 0o644 and mode(files[0]) == 0o600
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING).getMessage()
    assert "evaldock.sqlite3-wal" in warning
    assert f"chmod -R go-rwx '{root}'" in warning


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_entries_owned_by_others_are_left_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    files = old_layout(root)
    os.chown(files[0], 12345, 12345)
    prepare_data_dir(root, LOG)
    assert mode(files[0]) == 0o644 and mode(files[1]) == 0o600
    assert "could not be restricted by this user" in caplog.text


def test_incoming_leftovers_are_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG.name)
    root = tmp_path / "data"
    files = old_layout(root)
    leftovers = [root / ".incoming-abc", files[-1].parent / ".incoming-x1y2"]
    for f in leftovers:
        f.write_bytes(b"partial")
    (root / "incoming-keep").write_bytes(b"not a temporary")
    prepare_data_dir(root, LOG)
    assert not any(f.exists() for f in leftovers)
    assert all(f.exists() for f in files) and (root / "incoming-keep").exists()
    assert "Removed 2 leftover upload temporary files (.incoming-*)" in caplog.text


def test_private_helpers_create_owner_only_entries(tmp_path: Path) -> None:
    db = tmp_path / "evaldock.sqlite3"
    assert private_file(db) == db and db.read_bytes() == b"" and mode(db) == 0o600
    db.write_bytes(b"kept")
    os.chmod(db, 0o644)
    private_file(db)
    assert mode(db) == 0o600 and db.read_bytes() == b"kept"

    with open_private(tmp_path / "out.json") as fh:
        fh.write(b"{}")
    assert mode(tmp_path / "out.json") == 0o600 and (tmp_path / "out.json").read_bytes() == b"{}"

    folder = private_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and mode(folder) == 0o700


def test_private_dir_makes_every_missing_level_0700(tmp_path: Path) -> None:
    # Path.mkdir(parents=True, mode=0o700) left the parents it made at the umask's 0755.
    old = os.umask(0o022)
    try:
        deep = private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3


def test_every_folder_a_session_creates_is_0700(tmp_path: Path, settings_factory) -> None:
    """Uploads, datasets, blobs and job files of every surface land in 0700 folders."""
    from starlette.testclient import TestClient

    from evaldock.server.app import create_app
    from tests.marqtune.helpers import AUTH as MQ_AUTH
    from tests.marqtune.helpers import dataset_body

    old = os.umask(0o022)
    try:
        with TestClient(create_app(settings_factory())) as client:
            created = client.post("/datasets", json=dataset_body(), headers=MQ_AUTH).json()
            client.put(created["uploadUrl"], content=b"query,title,image,score\nq,t,i,1\n")
            oxen = {"Authorization": "Bearer test"}
            r = client.post("/api/repos", json={"namespace": "ns", "name": "r"}, headers=oxen)
            assert r.status_code == 200, r.text
            r = client.put(
                "/api/repos/ns/r/file/main/deep/er",
                files=[("files[]", ("x.csv", b"a,b\n1,2\n"))],
                data={"name": "Ox", "email": "ox@x", "message": "add"},
                headers=oxen,
            )
            assert r.status_code == 200, r.text
    finally:
        os.umask(old)
    loose = [
        str(p.relative_to(tmp_path))
        for p in (tmp_path / "data").rglob("*")
        if p.is_dir() and mode(p) != 0o700
    ]
    assert loose == []
