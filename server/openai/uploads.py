"""``client.files.create``'s multipart body, parsed from the pipeline's temporary file.

The client sends ``purpose`` (and ``expires_after[anchor]``/``[seconds]`` when given),
then ``file``: a raw-bytes upload arrives named ``upload`` with ``application/
octet-stream``, so neither the part's name nor its type says anything about the format.
The file part streams into its target through :func:`evaldock.server.multipart.read_form`
(memory stays one chunk). Runs in a worker (blocking reads and writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..multipart import FormInvalid, read_form
from ..multipart import boundary_of as _boundary_of

MAX_FIELD_BYTES = 4096  # purpose, expires_after[...]: a few bytes each
EXPECTED = "multipart/form-data with a 'file' part and a 'purpose' field"

UploadInvalid = FormInvalid


@dataclass
class Upload:
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str) -> bytes:
    return _boundary_of(content_type, EXPECTED)


class _Target:
    """The one ``file`` part, into ``target``."""

    def __init__(self, out: Upload, file: BinaryIO) -> None:
        self.out, self.file = out, file

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.out.size += len(data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def parse_upload(body: Path, content_type: str, target: Path) -> Upload:
    """Parse the multipart body in ``body``; the ``file`` part's bytes go to ``target``
    (created 0600; removed again when the body is refused)."""
    out = Upload()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    with os.fdopen(fd, "wb") as file:

        def open_file(name: str, filename: bytes | None) -> _Target | None:
            if name != "file":
                return None
            if out.filename is not None:
                raise UploadInvalid("the form has two 'file' parts; send one file per upload")
            raw = (filename or b"upload").decode("utf-8", "replace")
            out.filename = raw.replace("\\", "/").rsplit("/", 1)[-1] or "upload"
            return _Target(out, file)

        try:
            form = read_form(
                body, content_type, open_file, max_field_bytes=MAX_FIELD_BYTES, expected=EXPECTED
            )
        except FormInvalid:
            target.unlink(missing_ok=True)
            raise
    out.fields = form.fields
    if out.filename is None:
        target.unlink(missing_ok=True)
        raise UploadInvalid("the form has no 'file' part: files.create(file=..., purpose='evals')")
    return out
