"""Vendor model names to (backend, served model), from ``[judge.models]``.

Each entry is one of::

    [judge.models]
    "gpt-4o-mini" = "SmolLM2-135M-Instruct"        # a model served at [judge] urls
    "gpt-4o" = { urls = ["http://gpu2:8000/v1"], model = "Qwen2.5-7B-Instruct", api_key = "k" }
    "canned" = { backend = "mock" }                # deterministic answers, no model

Entries with their own URLs get their own OpenAI-compatible backend (one per distinct
URL list and key); the judge hands in the factory that builds backends
(:func:`.openai.make_backend`), so this module imports no backend. A name that needs the
judge's own server while it has none fails when asked for, with ``EngineUnavailable``
naming the setting, so a table kept for later does not stop Objective from starting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.protocols import BackendFactory, GenerationBackend

from .base import GENERATOR_HINT, UnknownModel

# Options an entry's own backend inherits from the judge's table.
INHERITED = (
    "timeout",
    "max_retries",
    "backoff",
    "max_backoff",
    "output_retries",
    "temperature",
    "max_tokens",
    "generation_max_tokens",
    "structured",
    "probe",
    "explanation_max_chars",
    "concurrency",
    "per_url_concurrency",
    "eject_seconds",
    "eject_max_seconds",
)


class ModelRoutes:
    def __init__(
        self,
        table: Mapping[str, Any] | None,
        *,
        own: GenerationBackend | None,
        own_model: str | None,
        shared: Mapping[str, Any],
        backends: BackendFactory,
    ) -> None:
        """``own`` serves plain-string entries and ``model=None`` (None: it cannot
        generate); ``shared`` is the judge's option table, inherited by entries;
        ``backends(kind, options)`` builds an entry's own backend ("openai" or "mock")."""
        self.own = own
        self.own_model = own_model
        self._shared = shared
        self._make = backends
        self._entries: dict[str, dict[str, Any]] = {}
        for name, entry in (table or {}).items():
            if isinstance(entry, str):
                entry = {"model": entry}
            elif not isinstance(entry, Mapping):
                raise EngineUnavailable(
                    f"[judge.models] '{name}' must be a served model name or a table",
                    'e.g. "gpt-4o-mini" = "SmolLM2-135M-Instruct"',
                )
            if entry.get("backend", "openai") not in ("openai", "mock"):
                raise EngineUnavailable(
                    f"[judge.models] '{name}' names backend '{entry['backend']}'",
                    "use 'openai' (with urls, or the [judge] urls) or 'mock'",
                )
            self._entries[str(name)] = dict(entry)
        self._backends: dict[tuple[Any, ...], GenerationBackend] = {}

    def known(self) -> list[str]:
        names = set(self._entries)
        if self.own is not None and self.own_model:
            names.add(self.own_model)
        return sorted(names)

    def resolve(self, name: str | None) -> tuple[GenerationBackend, str]:
        """The backend to ask and the model name to send it."""
        if name is None or (name == self.own_model and name not in self._entries):
            if self.own is None:
                raise EngineUnavailable("no generator model is configured", GENERATOR_HINT)
            return self.own, self.own_model or ""
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownModel(name, self.known())
        return self._backend(name, entry), str(entry.get("model") or name)

    def _backend(self, name: str, entry: dict[str, Any]) -> GenerationBackend:
        kind = entry.get("backend") or ("openai" if entry.get("urls") or entry.get("url") else "")
        if kind == "mock":
            key: tuple[Any, ...] = ("mock",)
            if key not in self._backends:
                self._backends[key] = self._make("mock", {})
            return self._backends[key]
        urls = entry.get("urls") or entry.get("url")
        if not urls:
            if self.own is None:
                raise EngineUnavailable(
                    f"model '{name}' maps to served model '{entry.get('model')}', "
                    "but no judge server is configured",
                    GENERATOR_HINT,
                )
            return self.own
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        api_key = entry.get("api_key", self._shared.get("api_key"))
        key = ("openai", tuple(urls), api_key)
        if key not in self._backends:
            options = {k: self._shared[k] for k in INHERITED if k in self._shared}
            options.update(urls=list(urls), model=str(entry.get("model") or name))
            if api_key:
                options["api_key"] = api_key
            self._backends[key] = self._make("openai", options)
        return self._backends[key]

    def served_by(self, backend: GenerationBackend) -> list[str]:
        """The served models that entries expect ``backend`` to have (start-up check)."""
        out = []
        for name in self._entries:
            try:
                target, served = self.resolve(name)
            except EngineUnavailable:
                continue
            if target is backend:
                out.append(served)
        return out

    def backends(self) -> list[GenerationBackend]:
        """Every backend of its own that an entry needs (created now, to be checked)."""
        for name in self._entries:
            with contextlib.suppress(EngineUnavailable):
                self.resolve(name)
        return list(self._backends.values())

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()
        self._backends.clear()
