"""``RemoteRepo.upload``'s multipart body, parsed from the pipeline's temporary file.

The pipeline streams the request body to disk; this reads it back 1 MiB at a time through
python-multipart's streaming parser, so each file part goes straight into a
:class:`~.blobs.BlobWriter` (hashed as it arrives) and memory stays one chunk whatever
the upload's size. Form fields (``name``, ``email``, ``message``) are small and kept.

Parts: ``files[]`` (a file into the folder of the URL, named by its ``filename``) or
``file`` (the same; oxen-server takes the URL as the full path when the URL names no
folder). Runs in a thread (blocking file reads and hashing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from .blobs import CHUNK, Blob, BlobStore, BlobWriter

# A form field (name, email, message) is at most this long: a commit message of 64 KiB
# is already far beyond any real one.
MAX_FIELD_BYTES = 64 * 1024
# Files in one upload: each becomes a tree row in one commit transaction.
MAX_FILES = 10_000
FILE_FIELDS = ("files[]", "file", "files")
# RFC 2046 section 5.1.1: a boundary is 1 to 70 characters. The official client (reqwest)
# sends 67 ("{16 hex}-{16 hex}-{16 hex}-{16 hex}"); python-multipart itself raises past
# 256, which surfaced as a 500.
MAX_BOUNDARY_CHARS = 70


class UploadInvalid(ValueError):
    """The body is not the multipart form the client sends; the message says what is off."""


@dataclass
class Upload:
    files: list[tuple[str, Blob]] = field(default_factory=list)  # (filename, blob)
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str) -> bytes:
    media, params = parse_options_header(content_type)
    if media != b"multipart/form-data":
        raise UploadInvalid(
            f"expected multipart/form-data, got {media.decode('latin-1') or 'no Content-Type'}"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadInvalid("the multipart/form-data Content-Type has no boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise UploadInvalid(
            f"the multipart boundary is {len(boundary)} characters long; RFC 2046 allows at"
            f" most {MAX_BOUNDARY_CHARS}: use a shorter boundary"
        )
    return boundary


def parse_upload(path: Path, content_type: str, blobs: BlobStore) -> Upload:
    """Parse the multipart body in ``path``; every file part is stored in ``blobs``."""
    boundary = boundary_of(content_type)
    out = Upload()
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b""}
    part: dict[str, Any] = {}

    def on_part_begin() -> None:
        state["headers"] = {}
        part.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        disposition = state["headers"].get("content-disposition", b"")
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        part["name"] = name
        if filename is not None or name in FILE_FIELDS:
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
            part["filename"] = segments[-1]
            part["writer"] = blobs.writer()
        else:
            part["buffer"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        writer: BlobWriter | None = part.get("writer")
        if writer is not None:
            writer.write(data[start:end])
            return
        buffer: bytearray = part["buffer"]
        buffer += data[start:end]
        if len(buffer) > MAX_FIELD_BYTES:
            raise UploadInvalid(f"form field {part['name']!r} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        writer: BlobWriter | None = part.pop("writer", None)
        if writer is not None:
            if not part["filename"]:
                writer.abort()
                raise UploadInvalid(f"the file part {part['name']!r} has no filename")
            out.files.append((part["filename"], writer.commit()))
        elif "buffer" in part:
            out.fields[part["name"]] = bytes(part["buffer"]).decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                parser.write(chunk)
        parser.finalize()
    except UploadInvalid:
        raise
    except Exception as e:  # python-multipart's MultipartParseError and friends
        raise UploadInvalid(f"the multipart body could not be parsed: {e}") from None
    finally:
        writer = part.get("writer")
        if writer is not None:
            writer.abort()
    return out
