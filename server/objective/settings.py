"""The ``[objective]`` table, typed: every Objective setting and its one default."""

from __future__ import annotations

import msgspec


class ObjectiveSettings(msgspec.Struct, kw_only=True):
    """The ``[objective]`` table."""

    # Pairs one evaluation may hold; more is a 400 naming this setting.
    max_items: int = 10_000
    # Judgements in flight per evaluation (a sliding window over the judge engine).
    concurrency: int = 64
