"""Which implementation serves each engine kind, read from the kinds' own declarations.

An engine kind is a package ``evaldock.engines.<kind>`` whose ``__init__`` declares::

    IMPLEMENTATIONS: dict[str, str] = {
        "mock": "evaldock.engines.<kind>.mock:MockThing",
        "real": "evaldock.engines.<kind>.real:RealThing",
    }
    REAL_DEFAULT = "real"  # what `--mode real` runs when the configuration names nothing
    PROCESS = "worker"     # where its engines live: "worker" (they compute) or "api"

Targets are absolute ``module:Class`` paths imported only when asked for, and a kind's
``__init__`` imports no model library, so ``--mode mock`` never imports torch. Adding a
kind adds a package; nothing here changes. A class is built as ``Class(options)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from evaldock.engines.errors import EngineUnavailable

PACKAGE = __name__.rpartition(".")[0]  # evaldock.engines
# What a kind runs on in real mode when its package declares no REAL_DEFAULT.
FALLBACK_DEFAULT = "mock"


def _declares(module: ModuleType) -> bool:
    return isinstance(getattr(module, "IMPLEMENTATIONS", None), Mapping)


def _package(kind: str) -> ModuleType | None:
    if not kind.isidentifier():
        return None
    try:
        module = importlib.import_module(f"{PACKAGE}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{PACKAGE}.{kind}":
            return None
        raise  # the kind exists but needs something missing: say so, do not hide it
    return module if _declares(module) else None


def kinds() -> list[str]:
    """Every engine kind present (imports each kind's package, none of its engines)."""
    package = importlib.import_module(PACKAGE)
    found = [
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.ispkg and _package(info.name) is not None
    ]
    return sorted(found)


def _kind(kind: str) -> ModuleType:
    module = _package(kind)
    if module is None:
        raise EngineUnavailable(
            f"unknown engine kind '{kind}'", hint=f"choose one of: {', '.join(kinds()) or 'none'}"
        )
    return module


def implementations(kind: str) -> dict[str, str]:
    """``{name: "module:Class"}`` as ``kind`` declares it."""
    return {str(k): str(v) for k, v in _kind(kind).IMPLEMENTATIONS.items()}


def real_default(kind: str) -> str:
    """The implementation ``kind`` runs in real mode when the configuration names none."""
    return str(getattr(_kind(kind), "REAL_DEFAULT", FALLBACK_DEFAULT))


def process(kind: str) -> str:
    """Where ``kind``'s engines live: ``"worker"`` for engines that compute (their work
    grows with the input: a model encoding), built inside the worker processes; ``"api"``
    (the default) for clients of a server, such as the judge."""
    return str(getattr(_kind(kind), "PROCESS", "api"))


def implementation(kind: str, name: str) -> type:
    """Import and return the class registered for ``kind``/``name``."""
    table = implementations(kind)
    target = table.get(name)
    if target is None:
        raise EngineUnavailable(
            f"unknown {kind} engine '{name}'", hint=f"choose one of: {', '.join(sorted(table))}"
        )
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not isinstance(cls, type):
        raise TypeError(f"{target} (the {kind} engine '{name}') is not a class")
    return cls


def create(kind: str, name: str, options: Mapping[str, Any] | None = None) -> Any:
    """Build an engine; raises :class:`EngineUnavailable` with a fix when it cannot start."""
    cls = implementation(kind, name)
    return cls(dict(options or {}))
