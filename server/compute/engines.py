"""Building an engine from the server's settings: the same in the API process (engines
that only talk to a server, like the OpenAI-compatible judge) and in a worker process
(engines that compute: rankers, embedders; their kind declares ``PROCESS = "worker"``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import Settings


def engine_options(settings: Settings, kind: str) -> tuple[str, dict[str, Any]]:
    """(implementation, options) of ``kind`` with the core's defaults filled in."""
    name, options = settings.engine_choice(kind)
    # Engines keep their caches beside the state, e.g. <data>/judge-cache.sqlite3.
    options.setdefault("cache_path", str(settings.data_dir / f"{kind}-cache.sqlite3"))
    options.setdefault("data_dir", str(settings.data_dir))
    return name, options


def build_engine(settings: Settings, kind: str) -> Any:
    from evaldock.engines import registry

    name, options = engine_options(settings, kind)
    return registry.create(kind, name, options)


def build_engines(settings: Settings, kinds: Sequence[str]) -> dict[str, Any]:
    return {kind: build_engine(settings, kind) for kind in dict.fromkeys(kinds)}


def placed(kinds: Sequence[str], where: str) -> list[str]:
    """The kinds among ``kinds`` whose engines live in ``where`` ("api" or "worker")."""
    from evaldock.engines import registry

    return [k for k in dict.fromkeys(kinds) if registry.process(k) == where]
