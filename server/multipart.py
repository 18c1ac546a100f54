"""A multipart/form-data body read back from the pipeline's temporary file, streaming.

Uploads stream to disk first (``pipeline.read_body_to_file``); a surface's task then reads
the file 1 MiB at a time through python-multipart's streaming parser, so a file part goes
straight to wherever the surface keeps it (a blob being hashed, a target file) and memory
stays one chunk whatever the upload's size. Form fields are small and kept, each bounded.

The surface decides what a part is: :func:`read_form` asks its ``open_file(name,
filename)`` for a :class:`FileSink` per part and keeps the part as a text field when it
answers None. Anything wrong with the body is :class:`FormInvalid` with the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from python_multipart.multipart import MultipartParser, parse_options_header

CHUNK = 1024 * 1024
# RFC 2046 section 5.1.1: a boundary is 1 to 70 characters (httpx sends 32 hex digits,
# reqwest 67 characters); python-multipart itself raises past 256, which was a 500.
MAX_BOUNDARY_CHARS = 70


class FormInvalid(ValueError):
    """The body is not the form the client sends; the message says what is off."""


class FileSink(Protocol):
    """Where one file part's bytes go."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None:
        """The part ended: keep what was written (may raise FormInvalid)."""
        ...

    def abort(self) -> None:
        """The body was refused: drop what was written."""
        ...


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str, expected: str = "multipart/form-data") -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, within RFC 2046's bound;
    ``expected`` says what the client should send instead of something else."""
    media, params = parse_options_header(content_type)
    if media != b"multipart/form-data":
        given = media.decode("latin-1") or "a body without Content-Type"
        raise FormInvalid(f"send {expected}, not {given}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormInvalid("the multipart/form-data Content-Type has no boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise FormInvalid(
            f"the multipart boundary is {len(boundary)} characters long; RFC 2046 allows at"
            f" most {MAX_BOUNDARY_CHARS}: use a shorter boundary"
        )
    return boundary


def part_names(disposition: bytes) -> tuple[str, bytes | None]:
    """(name, filename or None) of a part's Content-Disposition."""
    _, params = parse_options_header(disposition)
    return params.get(b"name", b"").decode("utf-8", "replace"), params.get(b"filename")


def read_form(
    path: Path,
    content_type: str,
    open_file: Callable[[str, bytes | None], FileSink | None],
    *,
    max_field_bytes: int,
    expected: str = "multipart/form-data",
) -> Form:
    """Parse the multipart body in ``path``: each part ``open_file`` gives a sink for
    streams into it; the others are text fields of at most ``max_field_bytes``."""
    boundary = boundary_of(content_type, expected)
    out = Form()
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "open": False}
    part: dict[str, Any] = {}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["open"] = True
        part.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        name, filename = part_names(state["headers"].get("content-disposition", b""))
        part["name"] = name
        sink = open_file(name, filename)
        if sink is not None:
            part["sink"] = sink
        else:
            part["buffer"] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        sink: FileSink | None = part.get("sink")
        if sink is not None:
            sink.write(data[start:end])
            return
        buffer: bytearray = part["buffer"]
        buffer += data[start:end]
        if len(buffer) > max_field_bytes:
            raise FormInvalid(f"form field {part['name']!r} is over {max_field_bytes} bytes")

    def on_part_end() -> None:
        state["open"] = False
        sink: FileSink | None = part.pop("sink", None)
        if sink is not None:
            sink.close()
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
        if state["open"]:  # python-multipart takes a body that stops mid-part
            raise FormInvalid(
                f"the body ends inside the part {part.get('name', '')!r}: the upload was "
                "cut short; send it again"
            )
    except FormInvalid:
        raise
    except Exception as e:  # python-multipart's MultipartParseError and friends
        raise FormInvalid(f"the multipart body could not be parsed: {e}") from None
    finally:
        sink = part.get("sink")
        if sink is not None:  # a part cut off by an error: nothing of it is kept
            sink.abort()
    return out
