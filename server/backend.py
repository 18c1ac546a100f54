"""A surface's backend: its rules and state, built by the core from a typed context.

moto's split, LocalStack's types: the provider (``server/<vendor>/provider.py``) parses a
request, calls one backend method with typed arguments and renders the answer in the
vendor's envelope; the backend (``server/<vendor>/backend.py``) decides, stores, and
submits jobs. A job kind names a backend method (``JobKind(XBackend.run_eval, ...)``),
called as ``method(backend, job)`` in the API process: it reads what the job needs, hands
the heavy part to a worker process as a plain function of picklable inputs
(``server/<vendor>/jobs.py``, run by :meth:`Job.run_task`), and commits what comes back.

The context is the only way in: typed settings, the database, the job runner, the worker
pool, the surface's data folder, its engines as the Protocols of
:mod:`evaldock.engines.protocols`, and its signing secret, loaded before any request.
The core builds it with :func:`evaldock.server.surface.backend_context`; a CLI command
gets the same backend from :func:`evaldock.server.surface.open_backend`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import msgspec

from .compute import TaskFailed, TaskLimits, WorkerPool
from .config import Settings
from .db import Database
from .jobs import JobRunner

S = TypeVar("S", bound=msgspec.Struct)
P = TypeVar("P")
T = TypeVar("T")


@dataclass
class BackendContext(Generic[S]):
    """What a surface's backend is built from (one per surface, built by the core)."""

    name: str
    options: S  # the surface's typed ``[<name>]`` settings
    settings: Settings  # everything else (the core's tables are typed: settings.jobs)
    db: Database
    runner: JobRunner
    pool: WorkerPool | None
    data_dir: Path  # <data>/<name>/, 0700
    engines: Mapping[str, Any] = field(default_factory=dict)
    # The surface's signing secret (capability URLs), loaded before any request.
    secret: bytes = b""

    def engine(self, kind: str, protocol: Callable[..., P]) -> P:
        """The engine of ``kind`` that lives in the API process (one that talks to a
        server, like the judge), typed as its Protocol. Engines that compute (rankers,
        embedders) live in the worker processes: a task reaches them with
        ``TaskContext.engine``."""
        return cast(P, self.engines[kind])

    def limits(self, lane: str = "request") -> TaskLimits:
        """The default limits of a lane's tasks, to tighten with a surface's own setting
        (``ctx.limits().tighter("[spice] sql_timeout", wall_seconds=5)``)."""
        return self.pool.limits_for(lane) if self.pool is not None else TaskLimits()

    async def task(
        self,
        fn: Callable[..., T],
        *args: Any,
        limits: TaskLimits | None = None,
    ) -> T:
        """``fn(ctx, *args)`` in a worker of the request lane (a request waits for it);
        without a pool (unit tests) inline. Raises :class:`TaskFailed` with the reason
        when it went over a limit: the provider answers it as the vendor's 4xx."""
        if self.pool is None:
            from .compute import run_inline

            return cast(T, run_inline(fn, *args, settings=self.settings))
        return cast(T, await self.pool.run(fn, *args, limits=limits, lane="request"))


class Backend(Generic[S]):
    """Base of the surfaces' backends: hold the context, start, reset a tenant."""

    def __init__(self, ctx: BackendContext[S]) -> None:
        self.ctx = ctx

    @property
    def options(self) -> S:
        return self.ctx.options

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def runner(self) -> JobRunner:
        return self.ctx.runner

    async def startup(self) -> None:
        """Load what the surface needs once its migrations ran and its secret is loaded."""

    async def reset(self, tenant: str | None) -> None:
        """Delete this surface's rows and files (one tenant's, or all)."""


__all__ = ["Backend", "BackendContext", "TaskFailed"]
