"""server/multipart.py: streaming form parts into the surface's sinks, bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaldock.server.multipart import MAX_BOUNDARY_CHARS, FormInvalid, boundary_of, read_form


class Sink:
    def __init__(self) -> None:
        self.data, self.closed, self.aborted = b"", False, False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def body(tmp_path: Path, parts: list[tuple[str, str | None, bytes]], boundary: str = "b0") -> Path:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data
        out += b"\r\n"
    path = tmp_path / "body"
    path.write_bytes(out + f"--{boundary}--\r\n".encode())
    return path


def test_file_parts_stream_to_sinks_and_fields_are_kept(tmp_path: Path) -> None:
    sinks: dict[str, Sink] = {}

    def open_file(name: str, filename: bytes | None) -> Sink | None:
        if filename is None:
            return None
        sinks[filename.decode()] = sink = Sink()
        return sink

    big = b"x" * (3 * 1024 * 1024 + 7)  # spans reads of 1 MiB
    path = body(tmp_path, [("purpose", None, b"evals"), ("file", "a.jsonl", big)])
    form = read_form(path, "multipart/form-data; boundary=b0", open_file, max_field_bytes=64)
    assert form.fields == {"purpose": "evals"}
    assert sinks["a.jsonl"].data == big and sinks["a.jsonl"].closed


def test_bounds_and_broken_bodies_are_form_invalid(tmp_path: Path) -> None:
    never = lambda name, filename: None  # noqa: E731
    long_field = body(tmp_path, [("message", None, b"m" * 65)])
    with pytest.raises(FormInvalid, match="over 64 bytes"):
        read_form(long_field, "multipart/form-data; boundary=b0", never, max_field_bytes=64)
    with pytest.raises(FormInvalid, match="RFC 2046"):
        boundary_of("multipart/form-data; boundary=" + "b" * (MAX_BOUNDARY_CHARS + 1))
    with pytest.raises(FormInvalid, match="send multipart/form-data, not text/plain"):
        boundary_of("text/plain")
    cut = tmp_path / "cut"
    cut.write_bytes(b'--b0\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nab')
    sink = Sink()
    with pytest.raises(FormInvalid):
        read_form(
            cut,
            "multipart/form-data; boundary=b0",
            lambda name, filename: sink,
            max_field_bytes=64,
        )
    assert sink.aborted and not sink.closed
