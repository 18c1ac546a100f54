"""The worker process: runs tasks the API process sends, one at a time, and keeps engines.

A task is a module-level function called as ``fn(ctx, *args)`` with a
:class:`TaskContext` first; it runs here, never in the API process, so it may use every
core and as much memory as its limits allow. Its answer (or exception) goes back pickled.
Engines (a CLIP ranker, an embedding model) are built on first use from the server's
settings and kept for the worker's life: the next task that needs one finds it loaded.

Messages on the pipe, worker to API process: ``("say", text)``, ``("progress", done,
total)``, then one ``("ok", value)`` or ``("error", exception, traceback text)``.
This module imports nothing heavy, so a worker starts in ~0.1 s; a task's own module
(and numpy, pyarrow, torch) is imported by its first task.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar, cast

from ..config import Settings
from .engines import build_engine

P = TypeVar("P")


class TaskContext:
    """What a task function gets as its first argument (in the worker process)."""

    def __init__(self, conn: Connection | None, settings: Settings | None) -> None:
        self._conn = conn
        self._settings = settings

    def say(self, message: str) -> None:
        """A line for the job's log (the surface records it as it records its own)."""
        if self._conn is not None:
            self._conn.send(("say", str(message)))

    def progress(self, done: int, total: int | None = None) -> None:
        """How far the task got; the job's progress follows (committed by the API)."""
        if self._conn is not None:
            self._conn.send(("progress", int(done), total))

    def check_cancelled(self) -> None:
        """Nothing to check: a cancelled task is killed with its worker. Kept so that
        code written for threads runs unchanged in a worker."""

    def engine(self, kind: str, protocol: Callable[..., P]) -> P:
        """The engine ``kind`` as the server's settings choose it, built once per worker
        and kept, typed as its Protocol (``ctx.engine("ranker", Ranker)``)."""
        if self._settings is None:
            raise RuntimeError("this task context has no settings to build engines from")
        return cast(P, engine_for(self._settings, kind))


_ENGINES: dict[str, Any] = {}


def engine_for(settings: Settings, kind: str) -> Any:
    found = _ENGINES.get(kind)
    if found is None:
        found = _ENGINES[kind] = build_engine(settings, kind)
    return found


def run_inline(fn: Callable[..., Any], *args: Any, settings: Settings | None = None) -> Any:
    """Run a task function in this process (the CLI and tests without a pool)."""
    return fn(TaskContext(None, settings), *args)


def _die_with_parent() -> None:
    # Linux: SIGKILL this worker when the thread of the API process that started it
    # ends (the pool's threads live as long as the pool), so a SIGKILLed server leaves
    # no worker computing on.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(conn: Connection) -> None:
    """The worker's loop: receive a task, run it, answer; exit when the pipe closes.
    The first message is the server's settings (engines are built from them)."""
    _die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the API process decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        settings = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    ctx = TaskContext(conn, settings)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        fn, args = message
        try:
            value = fn(ctx, *args)
        except BaseException as exc:  # everything goes back; the worker lives on
            conn.send(("error", pack_error(exc), traceback.format_exc()))
            continue
        conn.send(("ok", value))


def pack_error(exc: BaseException) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """An exception as (module, class name, args, attributes) that always pickles; the
    API process rebuilds the same class without calling its ``__init__`` (the project's
    errors take other arguments than the message they store)."""
    cls = type(exc)
    args = tuple(a if _picklable(a) else repr(a) for a in exc.args)
    attrs = {k: v for k, v in vars(exc).items() if _picklable(v)}
    return cls.__module__, cls.__qualname__, args, attrs


def unpack_error(packed: tuple[str, str, tuple[Any, ...], dict[str, Any]]) -> BaseException:
    import importlib

    module, qualname, args, attrs = packed
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(qualname)
        exc = cls.__new__(cls)
        BaseException.__init__(exc, *args)
        vars(exc).update(attrs)
        return exc
    except Exception:
        return RuntimeError(f"{qualname}: {', '.join(map(str, args))}")


def _picklable(value: Any) -> bool:
    """Pickles *and* unpickles: an exception whose __init__ takes other arguments than
    its message pickles but fails to load on the other side."""
    import pickle

    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        return False
    return True


def check_engine(ctx: TaskContext, kind: str) -> str:
    """A task: build ``kind``'s engine in this worker and let it prove it can serve (a
    model loads); the engine stays loaded for the jobs this worker runs next."""
    import asyncio

    from evaldock.engines.protocols import Engine

    engine = ctx.engine(kind, Engine)
    asyncio.run(engine.check())
    return engine.signature
