"""Which implementation serves each engine kind.

Implementations are named by import path and imported lazily, so ``--mode mock`` never
imports torch or any other model library.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .errors import EngineUnavailable

# kind -> implementation name -> "module:Class" (relative to this package).
IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    "judge": {
        "mock": ".judge.mock:MockJudge",
        "similarity": ".judge.similarity:SimilarityJudge",
        "openai": ".judge.openai:OpenAIJudge",
    },
    "ranker": {
        "mock": ".ranker.mock:MockRanker",
        "clip": ".ranker.clip:ClipRanker",
    },
}

# What each kind runs on in `--mode real` when the configuration names nothing.
REAL_DEFAULTS: dict[str, str] = {
    "judge": "similarity",
    "ranker": "clip",
}


def implementation(kind: str, name: str) -> type:
    """Import and return the class registered for ``kind``/``name``."""
    try:
        target = IMPLEMENTATIONS[kind][name]
    except KeyError:
        known = ", ".join(sorted(IMPLEMENTATIONS.get(kind, {}))) or "none"
        raise EngineUnavailable(
            f"unknown {kind} engine '{name}'", hint=f"choose one of: {known}"
        ) from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name, package=__package__)
    return getattr(module, attr)


def create(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build an engine; raises :class:`EngineUnavailable` with a fix when it cannot start."""
    cls = implementation(kind, name)
    return cls(dict(options or {}))
