"""Oxen's classification of a file: ``data_type``, ``mime_type`` and ``extension``.

Follows liboxen ``util::fs`` (``file_mime_type_from_extension`` and
``datatype_from_mimetype_from_extension``): the MIME type comes from the file's first bytes
(the ``infer`` crate; the common signatures are reproduced below), else ``text/markdown``
for ``.md``, ``text/plain`` when the first 4,096 bytes are UTF-8, else
``application/octet-stream``. The data type is then: image/video/audio by MIME type;
``tabular`` for csv/tsv/parquet/arrow/jsonl/ndjson (and ``.json`` whose first byte is ``[``);
``text`` for ``text/*``; else ``binary``. So a CSV is ``text/plain``/``tabular`` and a
parquet file ``application/octet-stream``/``tabular``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TABULAR_EXTENSIONS = frozenset({"csv", "tsv", "parquet", "arrow", "ndjson", "jsonl"})
DIR_MIME = "inode/directory"
# How many leading bytes classification needs (Oxen samples 4,096 for the UTF-8 test).
SNIFF_BYTES = 4096


@dataclass(frozen=True)
class FileType:
    data_type: str  # "text" | "image" | "video" | "audio" | "tabular" | "binary" | "dir"
    mime_type: str
    extension: str

    @property
    def is_tabular(self) -> bool:
        return self.data_type == "tabular"


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda b: b[:4] == b"RIFF" and b[8:12] == kind


# (test, MIME type), checked in order; a subset of the infer crate's matchers.
_SIGNATURES: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), "image/png"),
    (lambda b: b.startswith(b"\xff\xd8\xff"), "image/jpeg"),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), "image/gif"),
    (_riff(b"WEBP"), "image/webp"),
    (lambda b: b.startswith(b"BM"), "image/bmp"),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), "image/tiff"),
    (lambda b: b[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"), "image/heif"),
    (lambda b: b[4:12] == b"ftypavif", "image/avif"),
    (lambda b: b[4:8] == b"ftyp" and b[8:11] == b"qt ", "video/quicktime"),
    (lambda b: b[4:8] == b"ftyp", "video/mp4"),
    (lambda b: b.startswith(b"\x1a\x45\xdf\xa3"), "video/x-matroska"),
    (_riff(b"AVI "), "video/x-msvideo"),
    (_riff(b"WAVE"), "audio/x-wav"),
    (lambda b: b.startswith(b"fLaC"), "audio/x-flac"),
    (lambda b: b.startswith(b"OggS"), "audio/ogg"),
    (lambda b: b.startswith(b"ID3") or b[:2] in (b"\xff\xfb", b"\xff\xf3"), "audio/mpeg"),
    (lambda b: b.startswith(b"%PDF"), "application/pdf"),
    (lambda b: b.startswith(b"PK\x03\x04"), "application/zip"),
    (lambda b: b.startswith(b"\x1f\x8b"), "application/gzip"),
    (lambda b: b.startswith(b"SQLite format 3\x00"), "application/vnd.sqlite3"),
)


def extension(path: str) -> str:
    """Rust ``Path::extension``: the text after the last '.' of the name, unless it leads."""
    name = path.rpartition("/")[2]
    stem, dot, ext = name.rpartition(".")
    return ext if dot and stem else ""


def mime_type(path: str, head: bytes) -> str:
    for test, mime in _SIGNATURES:
        if test(head):
            return mime
    if extension(path).lower() == "md":
        return "text/markdown"
    if _is_utf8_prefix(head[:SNIFF_BYTES]):
        return "text/plain"
    return "application/octet-stream"


def classify(path: str, head: bytes) -> FileType:
    """Classify a file from its path and first :data:`SNIFF_BYTES` bytes."""
    ext = extension(path)
    mime = mime_type(path, head)
    return FileType(_data_type(ext.lower(), mime, head), mime, ext)


def classify_dir() -> FileType:
    return FileType("dir", DIR_MIME, "")


def _data_type(ext: str, mime: str, head: bytes) -> str:
    major = mime.split("/", 1)[0]
    if major in ("image", "video", "audio"):
        return major
    if ext in TABULAR_EXTENSIONS or (ext == "json" and head[:1] == b"["):
        return "tabular"
    if mime.startswith("text/"):
        return "text"
    return "binary"


def _is_utf8_prefix(head: bytes) -> bool:
    # Valid UTF-8, allowing a multi-byte character cut at the end of the sample (Oxen's
    # ``error_len().is_none()``).
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.reason == "unexpected end of data"
    return True
