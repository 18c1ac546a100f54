"""The ``[marqtune]`` table: every default of the Marqtune surface, in one place."""

from __future__ import annotations

from typing import Any

import msgspec

from .datasets import Limits


class MarqtuneSettings(msgspec.Struct, kw_only=True):
    """The ``[marqtune]`` table."""

    # Signed upload/download URLs live this long (seconds).
    url_expiry_seconds: int = 3600
    # Largest dataset file accepted (streamed to disk, never held in memory).
    max_upload_bytes: int = 512 * 1024 * 1024
    # A CSV header (queries.csv included) may have at most this many columns.
    max_columns: int = Limits.max_columns
    # A tar archive may decompress to at most this much, and this many times its size.
    max_decompressed_bytes: int = Limits.max_decompressed_bytes
    max_compression_ratio: float = Limits.max_compression_ratio
    # Documents an evaluation embeds per chunk: the memory one chunk holds (~8 KB a
    # document at 512 dimensions: 16,384 ~ 130 MB) and the work a restart may redo.
    encode_chunk: int = 16_384
    # Folders whose sub-folders a request may name as `local-dir:` weights.
    weight_dirs: list[str] = msgspec.field(default_factory=list)
    # [marqtune.models]: base-name overrides and registered fine-tuned models.
    models: dict[str, Any] = msgspec.field(default_factory=dict)
