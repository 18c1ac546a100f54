"""``client.files.create``'s multipart body, parsed from the pipeline's temporary file.

The client sends ``purpose`` (and ``expires_after[anchor]``/``[seconds]`` when given),
then ``file``: a raw-bytes upload arrives named ``upload`` with ``application/
octet-stream``, so neither the part's name nor its type says anything about the format.
The file part streams into its target 1 MiB at a time (memory stays one chunk); the form
fields are small and kept. Runs in a worker (blocking reads and writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

CHUNK = 1024 * 1024
MAX_FIELD_BYTES = 4096  # purpose, expires_after[...]: a few bytes each
# RFC 2046 section 5.1.1: a boundary is 1 to 70 characters (httpx sends 32 hex digits).
MAX_BOUNDARY_CHARS = 70


class UploadInvalid(ValueError):
    """The body is not the form the client sends; the message says what is off."""


@dataclass
class Upload:
    filename: str | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str) -> bytes:
    media, params = parse_options_header(content_type)
    if media != b"multipart/form-data":
        raise UploadInvalid(
            "send the file as multipart/form-data with a 'file' part and a 'purpose' field, "
            f"not {media.decode('latin-1') or 'a body without Content-Type'}"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadInvalid("the multipart/form-data Content-Type has no boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise UploadInvalid(
            f"the multipart boundary is {len(boundary)} characters long; RFC 2046 allows at"
            f" most {MAX_BOUNDARY_CHARS}"
        )
    return boundary


def parse_upload(body: Path, content_type: str, target: Path) -> Upload:
    """Parse the multipart body in ``body``; the ``file`` part's bytes go to ``target``
    (created 0600; removed again when the body is refused)."""
    boundary = boundary_of(content_type)
    out = Upload()
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b""}
    part: dict[str, Any] = {}
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    sink = os.fdopen(fd, "wb")

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
        _, params = parse_options_header(state["headers"].get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        part["name"] = name
        if name == "file":
            if out.filename is not None:
                raise UploadInvalid("the form has two 'file' parts; send one file per upload")
            raw = params.get(b"filename", b"upload").decode("utf-8", "replace")
            out.filename = raw.replace("\\", "/").rsplit("/", 1)[-1] or "upload"
            part["file"] = True
        else:
            part["buffer"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.get("file"):
            sink.write(data[start:end])
            out.size += end - start
            return
        buffer: bytearray = part["buffer"]
        buffer += data[start:end]
        if len(buffer) > MAX_FIELD_BYTES:
            raise UploadInvalid(f"form field {part['name']!r} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        if "buffer" in part:
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
        with sink, body.open("rb") as f:
            while chunk := f.read(CHUNK):
                parser.write(chunk)
            parser.finalize()
    except UploadInvalid:
        target.unlink(missing_ok=True)
        raise
    except Exception as e:  # python-multipart's MultipartParseError and friends
        target.unlink(missing_ok=True)
        raise UploadInvalid(f"the multipart body could not be parsed: {e}") from None
    if out.filename is None:
        target.unlink(missing_ok=True)
        raise UploadInvalid("the form has no 'file' part: files.create(file=..., purpose='evals')")
    return out
