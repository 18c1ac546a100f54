"""``RemoteRepo.upload``'s multipart body, parsed from the pipeline's temporary file.

The pipeline streams the request body to disk; the core's form reader
(:func:`evaldock.server.multipart.read_form`) reads it back a chunk at a time, so each file
part goes straight into a :class:`~.blobs.BlobWriter` (hashed as it arrives) and memory
stays one chunk whatever the upload's size. Form fields (``name``, ``email``,
``message``) are small and kept.

Parts: ``files[]`` (a file into the folder of the URL, named by its ``filename``) or
``file`` (the same; oxen-server takes the URL as the full path when the URL names no
folder). Runs in a thread (blocking file reads and hashing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..multipart import FormInvalid, boundary_of, read_form
from .blobs import Blob, BlobStore, BlobWriter

# A form field (name, email, message) is at most this long: a commit message of 64 KiB
# is already far beyond any real one.
MAX_FIELD_BYTES = 64 * 1024
# Files in one upload: each becomes a tree row in one commit transaction.
MAX_FILES = 10_000
FILE_FIELDS = ("files[]", "file", "files")

UploadInvalid = FormInvalid
__all__ = ["Upload", "UploadInvalid", "boundary_of", "parse_upload"]


@dataclass
class Upload:
    files: list[tuple[str, Blob]] = field(default_factory=list)  # (filename, blob)
    fields: dict[str, str] = field(default_factory=dict)


class _FilePart:
    """One file part into a blob, hashed as it arrives."""

    def __init__(self, out: Upload, name: str, filename: str, writer: BlobWriter) -> None:
        self.out, self.name, self.filename, self.writer = out, name, filename, writer

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        if not self.filename:
            self.writer.abort()
            raise UploadInvalid(f"the file part {self.name!r} has no filename")
        self.out.files.append((self.filename, self.writer.commit()))

    def abort(self) -> None:
        self.writer.abort()


def parse_upload(path: Path, content_type: str, blobs: BlobStore) -> Upload:
    """Parse the multipart body in ``path``; every file part is stored in ``blobs``."""
    out = Upload()

    def open_file(name: str, filename: bytes | None) -> _FilePart | None:
        if filename is None and name not in FILE_FIELDS:
            return None
        if len(out.files) >= MAX_FILES:
            raise UploadInvalid(f"more than {MAX_FILES} files in one upload; split it")
        raw = (filename or b"").decode("utf-8", "replace")
        # Browsers and some clients send a path; Oxen keeps the last component. A path
        # that climbs ('..' or '.') is refused outright: nothing of the upload is kept.
        segments = raw.replace("\\", "/").split("/")
        if any(seg in (".", "..") for seg in segments):
            raise UploadInvalid(
                f"the file name {raw!r} climbs folders ('..'); send the bare file name"
                " and put the folder in the URL (PUT .../file/{branch}/{folder})"
            )
        return _FilePart(out, name, segments[-1], blobs.writer())

    out.fields = read_form(path, content_type, open_file, max_field_bytes=MAX_FIELD_BYTES).fields
    return out
