"""Image references to bytes: local paths, ``file://`` URIs and ``data:`` URIs.

``http(s)://`` references are refused unless the engine was given a fetcher: the server
runs offline by default, and a silent network dependency would make evaluations depend on
whatever a remote host serves that day.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlsplit
from urllib.request import url2pathname

from evaldock.engines.errors import EngineError

Fetcher = Callable[[str], bytes]
REMOTE_SCHEMES = ("http", "https")


def _short(ref: str, limit: int = 120) -> str:
    # data: URIs can be megabytes long; error messages name them by their head.
    return ref if len(ref) <= limit else ref[:limit] + "..."


def read_image_bytes(
    ref: str, *, fetcher: Fetcher | None = None, root: str | os.PathLike[str] | None = None
) -> bytes:
    """The encoded image a reference points to; :class:`EngineError` naming it if none."""
    if not isinstance(ref, str) or not ref.strip():
        raise EngineError(f"empty image reference: {ref!r}")
    ref = ref.strip()
    scheme = urlsplit(ref).scheme.lower() if ":" in ref else ""
    if scheme == "data":
        return _decode_data_uri(ref)
    if scheme in REMOTE_SCHEMES:
        if fetcher is None:
            raise EngineError(
                f"remote images cannot be fetched: no network (image reference {_short(ref)}); "
                "use a local path, a file:// URI or a data: URI"
            )
        try:
            return fetcher(ref)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"could not fetch image {_short(ref)}: {exc}") from exc
    if scheme == "file":
        path = _file_uri_path(ref)
    # One-letter "schemes" are Windows drive letters (C:\\img.png), not URIs.
    elif scheme and len(scheme) > 1:
        raise EngineError(f"unsupported image reference scheme '{scheme}:' in {_short(ref)}")
    else:
        path = Path(ref).expanduser()
        if root is not None and not path.is_absolute():
            path = Path(root) / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read image {_short(ref)}: {exc.strerror or exc}") from exc


def _file_uri_path(ref: str) -> Path:
    parts = urlsplit(ref)
    if parts.netloc not in ("", "localhost"):
        raise EngineError(f"file:// URI names another host ({parts.netloc}): {_short(ref)}")
    return Path(url2pathname(unquote(parts.path)) if os.name == "nt" else unquote(parts.path))


def _decode_data_uri(ref: str) -> bytes:
    head, sep, payload = ref[5:].partition(",")
    if not sep:
        raise EngineError(f"malformed data: URI (no comma): {_short(ref)}")
    if head.lower().split(";")[-1] == "base64":
        try:
            # Whitespace and missing padding are common in hand-made data URIs.
            compact = "".join(unquote(payload).split())
            return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EngineError(f"data: URI is not valid base64: {_short(ref)}") from exc
    return unquote_to_bytes(payload)
