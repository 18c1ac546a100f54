"""Content-addressed file bytes for Oxen repositories, under ``<data_dir>/oxen/blobs/``.

Every blob carries two digests:

- ``key`` (SHA-256, 64 hex digits) is what the file is stored under. xxh3 is fast but not
  collision resistant against someone who crafts inputs, and blobs are shared by every
  tenant, so a crafted collision must not let one tenant replace another's bytes.
- ``hash`` is Oxen's own content hash, xxh3-128 printed as Rust's ``format!("{:x}", u128)``
  (liboxen ``util::hasher::hash_buffer`` and ``MerkleHash``'s ``Display``): lowercase hex
  **without leading zeros**, so about 1 in 16 hashes is shorter than 32 digits. This is the
  ``hash`` of a metadata entry; the client parses it back with ``u128::from_str_radix``.

Writes stream to a temporary file in the same folder, are fsynced, then renamed into place,
so a crash leaves either no blob or the whole blob, never a torn one. Hashing runs at about
1 GB/s (SHA-256 dominates; xxh3 is ~10x faster): the server runs :meth:`BlobStore.put_file`
and friends in a worker process (:mod:`.jobs`), never on its event loop.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import xxhash

from ..datadir import private_dir
from .filetypes import SNIFF_BYTES, FileType, classify

# 1 MiB reads: large enough that per-call overhead is negligible, small enough that a
# multi-GB upload never sits in memory.
CHUNK = 1 << 20
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def oxen_hash(data: bytes) -> str:
    """Oxen's content hash of ``data``: xxh3-128 as unpadded lowercase hex."""
    return format(xxhash.xxh3_128_intdigest(data), "x")


class OxenHasher:
    """Incremental :func:`oxen_hash` (same value as hashing the concatenated chunks)."""

    def __init__(self) -> None:
        self._h = xxhash.xxh3_128()

    def update(self, chunk: bytes) -> None:
        self._h.update(chunk)

    def hexdigest(self) -> str:
        return format(self._h.intdigest(), "x")


class BlobNotFound(Exception):
    """A tree names a blob that is not on disk (the blob folder was edited by hand)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"blob {key} is missing from the blob store; restore <data_dir>/oxen/blobs/"
            " from a backup or delete the repository that refers to it"
        )
        self.key = key


@dataclass(frozen=True)
class Blob:
    key: str  # SHA-256 hex: where the bytes live
    hash: str  # Oxen's xxh3-128 hex (unpadded): what the client sees
    size: int


class BlobWriter:
    """Receives one blob's bytes chunk by chunk; :meth:`commit` publishes it.

    Use as a context manager so an exception (a dropped upload) removes the temporary file.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        os.fchmod(fd, _FILE_MODE)
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._sha = hashlib.sha256()
        self._xxh = OxenHasher()
        self._size = 0
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._sha.update(chunk)
        self._xxh.update(chunk)
        self._size += len(chunk)

    def commit(self) -> Blob:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        blob = Blob(self._sha.hexdigest(), self._xxh.hexdigest(), self._size)
        target = self._store.path(blob.key)
        if target.exists():
            # Same bytes already stored (SHA-256 equal): keep the old file, drop ours.
            self._tmp.unlink()
        else:
            target.parent.mkdir(mode=_DIR_MODE, exist_ok=True)
            os.replace(self._tmp, target)
            _fsync_dir(target.parent)
        self._done = True
        return blob

    def abort(self) -> None:
        if not self._done:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


class BlobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "oxen" / "blobs"
        self.tmp_dir = self.root / "tmp"
        private_dir(self.tmp_dir)
        for folder in (data_dir / "oxen", self.root, self.tmp_dir):
            folder.chmod(_DIR_MODE)

    def path(self, key: str) -> Path:
        # Two-digit fan-out: 256 folders keep each folder under ~4k entries up to ~1M blobs.
        return self.root / key[:2] / key[2:]

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_chunks(self, chunks: Iterable[bytes]) -> Blob:
        with self.writer() as w:
            for chunk in chunks:
                w.write(chunk)
            return w.commit()

    def put_file(self, source: Path | BinaryIO) -> Blob:
        """Store a file's bytes (a path, or an open binary file read from its current position)."""
        if isinstance(source, Path):
            with source.open("rb") as f:
                return self.put_chunks(_read_chunks(f))
        return self.put_chunks(_read_chunks(source))

    def put_bytes(self, data: bytes) -> Blob:
        return self.put_chunks([data])

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def classify(self, files: Mapping[str, str]) -> dict[str, FileType]:
        """Oxen's file type of each ``{path: blob key}`` from the blob's first 4 KiB (a
        1,000-file upload reads ~4 MB); also proves every blob is on disk."""
        out = {}
        for path, key in files.items():
            with self.open(key) as f:
                out[path] = classify(path, f.read(SNIFF_BYTES))
        return out

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        with self.open(key) as f:
            yield from _read_chunks(f, chunk_size)

    def keys(self) -> Iterator[str]:
        for folder in self.root.iterdir():
            if folder.is_dir() and len(folder.name) == 2:
                for f in folder.iterdir():
                    yield folder.name + f.name

    def collect(self, referenced: set[str], min_age_s: float = 3600.0) -> int:
        """Delete blobs no tree refers to; return how many.

        Only blobs older than ``min_age_s`` go: an upload stores its blobs before the commit
        that refers to them, and an hour is far beyond any upload-to-commit gap.
        """
        cutoff = time.time() - min_age_s
        removed = 0
        for key in list(self.keys()):
            p = self.path(key)
            if key not in referenced and p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
                removed += 1
        for f in self.tmp_dir.iterdir():
            if f.stat().st_mtime < cutoff:
                f.unlink(missing_ok=True)
        return removed


def _read_chunks(f: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry list is on disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
