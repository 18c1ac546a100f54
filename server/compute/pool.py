"""The API process's side of the worker processes: send a task, watch its limits, kill.

Why processes: the API process's event loop answers every surface and tenant, and one GIL
is shared by every thread in it. A quadratic scorer, a parser of a hostile file or a SQL
query in a thread stalled every request for tens of seconds and no job could use a second
core. In a worker process such a task costs its own core and its own memory, and the pool
can stop it from outside at any moment.

Shape:

- ``[jobs] workers`` processes serve jobs (0: one per core) and ``[jobs] request_workers``
  more serve bounded work that a request waits for (a SQL query, a page of a data file),
  so a request never queues behind a long evaluation. Each is a fresh interpreter running
  :mod:`.worker`, started in the background at start-up (~0.1 s each).
- A task is ``fn(ctx, *args)``, a module-level function with picklable arguments; its
  answer comes back pickled. Keep both small (paths, not tables): they cross a pipe.
- A watcher samples the worker's CPU time and resident memory from ``/proc`` every
  :data:`WATCH_SECONDS`; over a limit, or when the caller is cancelled (a DELETE, a cancel
  endpoint, shutdown), the worker is SIGKILLed within that period and replaced; the caller
  gets :class:`LimitExceeded` or ``CancelledError``. A worker that dies by itself (a
  segfault, the kernel's OOM killer) is :class:`WorkerCrashed`, never the server's end.
- A worker whose memory stayed above ``[jobs] worker_recycle_mb`` after a task is retired:
  a task that decoded a large file leaves no gigabytes behind in a long-lived process.
- A task run with ``retire=True`` (or a function marked :func:`retire_worker`) retires its
  worker when it ends, however it ends, and a fresh worker takes its place in the
  background: code the task ran (a user's python grader) cannot leave module globals,
  threads, open files or monkey-patches behind for later tasks. It costs one interpreter
  start (~0.1 s) per such task, off the caller's path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from ..config import Settings
from . import worker as worker_module
from .limits import LimitExceeded, TaskFailed, TaskLimits, WorkerCrashed
from .marks import RETIRE_ATTR

log = logging.getLogger("evaldock.compute")

# How often a running task's worker is sampled: a runaway task is stopped within this
# (a /proc read costs ~20 us, so 10 samples a second per task are free).
WATCH_SECONDS = 0.1
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# `python -m` this package: its __main__ runs .worker.main on the inherited socket.
_WORKER_MODULE = __package__ or "evaldock.server.compute"

Say = Callable[[str], Awaitable[None]]
Progress = Callable[[int, int | None], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])


def preload(ctx: Any, module: str) -> None:
    """A task: import ``module`` (a replacement worker's warm-up, see ``_replace``)."""
    importlib.import_module(module)


def retire_worker(fn: F) -> F:
    """Mark a task function so every worker that runs it is retired afterwards (see
    ``WorkerPool.run(retire=...)``): the callers (``ctx.task``, ``job.run_task``) need
    not pass anything."""
    setattr(fn, RETIRE_ATTR, True)
    return fn


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pid = process.pid
        # Why it was killed, when the pool killed it (a limit, a cancellation).
        self.reason: TaskFailed | None = None
        self.dead = False
        # Modules of the tasks it ran: imported already (see WorkerPool.run's retire).
        self.modules: set[str] = set()

    def cpu_seconds(self) -> float:
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            return 0.0
        # utime and stime are the 14th and 15th fields; the split starts at the 3rd.
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as fh:
                return int(fh.read().split()[1]) * _PAGE / (1024 * 1024)
        except OSError:
            return 0.0

    def kill(self, reason: TaskFailed | None = None) -> None:
        if reason is not None and self.reason is None:
            self.reason = reason
        self.dead = True
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGKILL)

    def death(self) -> TaskFailed:
        """Why the worker's pipe closed: the pool's reason, or how the process died."""
        if self.reason is not None:
            return self.reason
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()
            return WorkerCrashed("the worker process stopped answering and was killed")
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = " (the kernel's out-of-memory killer sends SIGKILL)" if code == -9 else ""
            return WorkerCrashed(f"the worker process died of {name}{hint}")
        return WorkerCrashed(f"the worker process exited with code {code}")


class WorkerPool:
    def __init__(
        self,
        settings: Settings | None,
        *,
        workers: int = 0,
        request_workers: int = 2,
        limits: TaskLimits | None = None,
        request_limits: TaskLimits | None = None,
        recycle_mb: int = 2048,
    ) -> None:
        self.settings = settings
        self.workers = workers or os.cpu_count() or 1
        self.request_workers = max(1, request_workers)
        self.limits = limits or TaskLimits()
        self.request_limits = request_limits or self.limits
        self.recycle_mb = recycle_mb
        self._lanes = {
            "job": asyncio.Semaphore(self.workers),
            "request": asyncio.Semaphore(self.request_workers),
        }
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        size = self.workers + self.request_workers
        # One thread per running task waits on its pipe, plus room to start workers.
        self._io = concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * size + 2, thread_name_prefix="evaldock-pool"
        )
        self._closed = False
        self._warming: asyncio.Task[None] | None = None
        self._replacing: set[asyncio.Task[None]] = set()
        self.retired = 0  # workers retired after a task that asked for it (tests, metrics)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Fork the job workers in the background: start-up does not wait for them."""
        self._warming = asyncio.get_running_loop().create_task(self._warm(self.workers))

    async def _warm(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            # Workers started already (a start-up engine check) count, and stay first in
            # line: the idle list is taken from its end, and they hold loaded engines.
            for _ in range(count - len(self.pids)):
                if self._closed:
                    return
                fresh = await loop.run_in_executor(self._io, self._spawn)
                if self._closed:
                    fresh.kill()
                    return
                self._idle.insert(0, fresh)
        except Exception:  # a failed warm-up is retried by the first task that needs one
            log.exception("could not start worker processes ahead of time")

    async def close(self) -> None:
        self._closed = True
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        for task in list(self._replacing):
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        everyone = [*self._idle, *self._busy]
        self._idle.clear()
        for w in everyone:
            w.kill(TaskFailed("the server is stopping"))
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._io, w.process.wait, 5) for w in everyone),
            return_exceptions=True,
        )
        self._io.shutdown(wait=False, cancel_futures=True)

    def _spawn(self) -> _Worker:
        # A fresh interpreter, not a fork: nothing of the API process's threads, locks or
        # event loop comes along, and no user's __main__ is re-run (multiprocessing's
        # spawn and forkserver both re-import it). Starting one costs ~0.1 s, once per
        # worker's life.
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # Whatever the API process can import (a test's task module), the worker can.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __package__ or "evaldock.server.compute",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        conn.send(self.settings)
        return _Worker(process, conn)

    @property
    def pids(self) -> list[int]:
        """Worker processes alive now (tests, the control plane)."""
        return [w.pid for w in [*self._idle, *self._busy] if not w.dead]

    # -- running a task -----------------------------------------------------------------
    def limits_for(self, lane: str) -> TaskLimits:
        """The default limits of a lane's tasks (a caller may pass tighter ones)."""
        return self.request_limits if lane == "request" else self.limits

    async def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        limits: TaskLimits | None = None,
        lane: str = "job",
        on_say: Say | None = None,
        on_progress: Progress | None = None,
        retire: bool | None = None,
    ) -> Any:
        """``fn(ctx, *args)`` in a worker; its value, or its exception re-raised here.

        ``retire``: kill the worker when the task ends and start a fresh one in its place
        (None: as ``fn`` is marked by :func:`retire_worker`). Raises
        :class:`LimitExceeded` or :class:`WorkerCrashed` when it did not answer."""
        if self._closed:
            raise TaskFailed("the server is stopping")
        if retire is None:
            retire = bool(getattr(fn, RETIRE_ATTR, False))
        module = getattr(fn, "__module__", None)
        async with self._lanes[lane]:
            worker = await self._acquire()
            try:
                if retire and module and module not in worker.modules:
                    # A retiring task mostly meets a worker that never ran its kind:
                    # import its module first, under the lane's limits, so the task's
                    # own (a python grader's 2 minutes) measure the task alone.
                    await self._execute(
                        worker, preload, (module,), self.limits_for(lane), None, None
                    )
                kind, value, text = await self._execute(
                    worker, fn, args, limits or self.limits_for(lane), on_say, on_progress
                )
                if module:
                    worker.modules.add(module)
            finally:
                if retire and not worker.dead:
                    self._retire(worker, getattr(fn, "__module__", None))
                self._release(worker)
        if kind == "error":
            exc = worker_module.unpack_error(value)
            log.debug("task %s raised in its worker:\n%s", getattr(fn, "__name__", fn), text)
            raise exc
        return value

    async def _acquire(self) -> _Worker:
        while self._idle:
            found = self._idle.pop()
            if not found.dead and found.process.poll() is None:
                self._busy.add(found)
                return found
        loop = asyncio.get_running_loop()
        fresh = await loop.run_in_executor(self._io, self._spawn)
        self._busy.add(fresh)
        return fresh

    def _retire(self, worker: _Worker, module: str | None) -> None:
        """Kill ``worker`` (``_release`` then reaps it) and start its replacement, with
        ``module`` (the retired task's) imported: the next such task does not spend its
        own limits importing it (the OpenAI surface's task module takes seconds to import
        on a loaded 2-core machine, against a python grader's wall-time limit)."""
        log.debug("retiring worker %d after a task that asked for it", worker.pid)
        worker.kill()
        self.retired += 1
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to warm
            task = asyncio.get_running_loop().create_task(self._replace(module))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    async def _replace(self, module: str | None) -> None:
        """One fresh idle worker, unless the pool is full or closing by then."""
        if len(self.pids) >= self.workers + self.request_workers:
            return
        loop = asyncio.get_running_loop()
        try:
            fresh = await loop.run_in_executor(self._io, self._spawn)
        except Exception:  # the next task that needs a worker starts one
            log.exception("could not start a worker in place of a retired one")
            return
        if module and not self._closed:
            try:
                await loop.run_in_executor(self._io, fresh.conn.send, (preload, (module,)))
                answer = await loop.run_in_executor(self._io, fresh.conn.recv)
                if answer[0] == "ok":
                    fresh.modules.add(module)
            except asyncio.CancelledError:  # the pool is closing
                fresh.kill()
                raise
            except Exception:  # it died while importing: the next task starts another
                fresh.kill()
                return
        if self._closed:
            fresh.kill()
            return
        self._idle.insert(0, fresh)

    def _release(self, worker: _Worker) -> None:
        self._busy.discard(worker)
        if worker.dead or self._closed:
            worker.kill()
            # Reap it off the loop; a SIGKILLed process is gone within milliseconds.
            with contextlib.suppress(RuntimeError):
                self._io.submit(worker.process.wait, 5)
            return
        if worker.rss_mb() > self.recycle_mb:
            log.info(
                "retiring worker %d: %.0f MB resident after its task (> [jobs] "
                "worker_recycle_mb %d)",
                worker.pid,
                worker.rss_mb(),
                self.recycle_mb,
            )
            worker.kill()
            with contextlib.suppress(RuntimeError):
                self._io.submit(worker.process.wait, 5)
            return
        self._idle.append(worker)

    async def _execute(
        self,
        worker: _Worker,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        limits: TaskLimits,
        on_say: Say | None,
        on_progress: Progress | None,
    ) -> tuple[str, Any, str]:
        loop = asyncio.get_running_loop()
        relay = _Relay(loop, on_say, on_progress)
        cpu_start = worker.cpu_seconds()
        started = time.monotonic()
        try:
            await loop.run_in_executor(self._io, worker.conn.send, (fn, args))
        except asyncio.CancelledError:
            # The send may have gone through: the task's answer would then wait in the
            # pipe, and the worker's next task would read it as its own.
            worker.kill(TaskFailed("cancelled"))
            raise
        except (OSError, ValueError) as exc:
            worker.kill()
            raise worker.death() from exc
        answer = loop.run_in_executor(self._io, _receive, worker.conn, relay)
        watch = loop.create_task(self._watch(worker, limits, started, cpu_start))
        try:
            message = await asyncio.shield(answer)
        except asyncio.CancelledError:
            worker.kill(TaskFailed("cancelled"))
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(answer), 5)
            raise
        except (EOFError, OSError):
            worker.dead = True
            raise await loop.run_in_executor(self._io, worker.death) from None
        finally:
            watch.cancel()
            await relay.drain()
        return message

    async def _watch(
        self, worker: _Worker, limits: TaskLimits, started: float, cpu_start: float
    ) -> None:
        # (limit's name, its field, what the task used now, the unit it is shown in)
        checks: list[tuple[str, str, Callable[[], float], str]] = [
            ("wall-time", "wall_seconds", lambda: time.monotonic() - started, "s"),
            ("CPU-time", "cpu_seconds", lambda: worker.cpu_seconds() - cpu_start, "s"),
            ("memory", "memory_mb", worker.rss_mb, "MB"),
        ]
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            for name, field, used_now, unit in checks:
                used, bound = used_now(), getattr(limits, field)
                if used > bound:
                    shown = f"{used:.0f} {unit}" if unit == "MB" else f"{used:.1f} {unit}"
                    setting = limits.settings[field]
                    worker.kill(LimitExceeded(name, shown, f"{bound:g} {unit}", setting))
                    return


def _receive(conn: Connection, relay: _Relay) -> tuple[str, Any, str]:
    """In an I/O thread: pass say/progress on, return the final answer."""
    while True:
        message = conn.recv()
        kind = message[0]
        if kind == "ok":
            return "ok", message[1], ""
        if kind == "error":
            return "error", message[1], message[2]
        relay.post(message)


class _Relay:
    """Hands a worker's say/progress messages to the caller's coroutines on the loop, in
    order; progress is coalesced (only the newest value matters)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_say: Say | None, on_progress: Progress | None
    ) -> None:
        self.loop = loop
        self.on_say = on_say
        self.on_progress = on_progress
        self._queue: list[tuple[Any, ...]] = []
        self._task: asyncio.Task[None] | None = None

    def post(self, message: tuple[Any, ...]) -> None:
        self.loop.call_soon_threadsafe(self._accept, message)

    def _accept(self, message: tuple[Any, ...]) -> None:
        if message[0] == "progress" and self._queue and self._queue[-1][0] == "progress":
            self._queue[-1] = message
        else:
            self._queue.append(message)
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._pump())

    async def _pump(self) -> None:
        while self._queue:
            message = self._queue.pop(0)
            try:
                if message[0] == "say":
                    if self.on_say is not None:
                        await self.on_say(message[1])
                    else:
                        log.info("%s", message[1])
                elif message[0] == "progress" and self.on_progress is not None:
                    await self.on_progress(message[1], message[2])
            except Exception:  # a log line that failed must not fail the task
                log.exception("could not record a worker's %s message", message[0])

    async def drain(self) -> None:
        # Messages posted just before the answer are still on their way to the loop.
        await asyncio.sleep(0)
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
            await asyncio.sleep(0)
