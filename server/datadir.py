"""The data directory: private to its owner, and cleaned of crash leftovers on start.

The directory holds the SQLite database (API keys, signing secrets, every upload's
rows), uploaded files and model checkpoints, so only its owner may read it: the
directory is ``0700`` and files are ``0600``. Versions before this one created it
``0755`` with ``0644`` files (the process umask); :func:`prepare_data_dir` tightens
such a directory on start, entry by entry, where this user owns the entry, and warns
with the ``chmod`` to run where it cannot. It never refuses to start: a permission it
cannot change is the operator's call.

The umask is process-wide state (and engines must not change it, nor may the server
under them), so private files are created with an explicit mode instead:
:func:`private_file` / :func:`open_private` / :func:`private_dir`.
``tempfile.mkstemp`` already creates ``0600`` files; SQLite gives its ``-wal`` and
``-shm`` files the database file's mode, so creating the database with
:func:`private_file` first is enough.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import stat
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600
# Upload temporaries (``tempfile.mkstemp(prefix=".incoming-")``); one left behind is a
# crash's, since a finished upload renames or unlinks its own.
INCOMING_PREFIX = ".incoming-"
_SHOWN = 3  # paths named in a warning


def prepare_data_dir(path: Path, log: logging.Logger) -> None:
    """Create ``path`` private, or tighten an older one; remove upload leftovers.

    Logs what it changed; warns (with the command to run) where it could not.
    """
    path = Path(path)
    try:
        if not path.exists():
            path.mkdir(mode=DIR_MODE, parents=True)
            os.chmod(path, DIR_MODE)  # mkdir's mode passes through the umask
            log.info("Created the data directory %s (mode 0700)", path)
            return
    except OSError as exc:
        log.warning("Could not create the data directory %s: %s", path, exc)
        return
    tightened, refused, removed, failed = _walk(path)
    if tightened:
        log.info(
            "Restricted %d entries of the data directory %s to their owner "
            "(directories 0700, files 0600; earlier versions left them readable by others)",
            tightened,
            path,
        )
    if refused:
        shown = ", ".join(str(p) for p in refused[:_SHOWN])
        more = f" and {len(refused) - _SHOWN} more" if len(refused) > _SHOWN else ""
        log.warning(
            "%d entries of the data directory %s are readable by other users and could not "
            "be restricted by this user (%s%s); as their owner, run: chmod -R go-rwx %s",
            len(refused),
            path,
            shown,
            more,
            shlex.quote(str(path)),
        )
    if removed:
        log.info(
            "Removed %d leftover upload temporary files (%s*) from %s",
            removed,
            INCOMING_PREFIX,
            path,
        )
    if failed:
        log.warning(
            "Could not remove %d leftover upload temporary files under %s (e.g. %s)",
            len(failed),
            path,
            failed[0],
        )


def _walk(root: Path) -> tuple[int, list[Path], int, list[Path]]:
    """(entries tightened, entries that could not be, leftovers removed, not removed)."""
    uid = os.getuid()
    tightened, removed = 0, 0
    refused: list[Path] = []
    failed: list[Path] = []

    def tighten(entry: Path, st: os.stat_result) -> None:
        nonlocal tightened
        if not st.st_mode & 0o077:
            return
        if st.st_uid != uid:
            refused.append(entry)
            return
        try:
            os.chmod(entry, stat.S_IMODE(st.st_mode) & ~0o077)  # owner bits kept
        except OSError:
            refused.append(entry)
        else:
            tightened += 1

    def on_error(exc: OSError) -> None:
        refused.append(Path(exc.filename or root))

    try:
        tighten(root, root.stat())
    except OSError:
        refused.append(root)
    for folder, dirs, files, folder_fd in os.fwalk(root, onerror=on_error):
        base = Path(folder)
        for name in [*dirs, *files]:
            entry = base / name
            try:
                st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISLNK(st.st_mode):
                continue  # never chmod through a link: its target may be anyone's
            if stat.S_ISREG(st.st_mode) and name.startswith(INCOMING_PREFIX):
                try:
                    os.unlink(name, dir_fd=folder_fd)
                except OSError:
                    failed.append(entry)
                else:
                    removed += 1
                continue
            tighten(entry, st)
    return tightened, refused, removed, failed


def private_file(path: Path) -> Path:
    """``path`` as an existing file readable by its owner only: created empty (``0600``)
    when missing, tightened when present. For the database before SQLite opens it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private(path: Path) -> BinaryIO:
    """``path`` created or truncated, ``0600``, open for binary writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def private_dir(path: Path) -> Path:
    """``path`` and every missing parent created ``0700`` (a present ``path`` is tightened).

    ``Path.mkdir(parents=True, mode=…)`` gives the parents it creates the umask's mode
    (``0755`` under the usual ``022``), not ``mode``: each level is made here instead.
    """
    missing: list[Path] = []
    level = path
    while not level.exists():
        missing.append(level)
        if level.parent == level:
            break
        level = level.parent
    for folder in reversed(missing):
        # One made by a concurrent caller meanwhile is tightened all the same.
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)  # mkdir's mode passes through the umask
    if not missing:
        os.chmod(path, DIR_MODE)
    return path
