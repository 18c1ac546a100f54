"""SQLite state: WAL, one writer, reads beside it, versioned migrations.

Both the writer and the usual reads run on the event loop's own thread, through the
sqlite3 module: no thread hop. Why: with the loop busy (hundreds of clients polling)
a hop to a connection thread cost far more than the statement. The thread had to be
scheduled beside a saturated loop and the load on two cores, and its answer waited for
the next loop iteration: 11 ms a statement with 50 pollers, 50-70 ms with 200, so a
five-statement POST took 0.3-1 s and evaluations completed 4x slower with 200 pollers
than with 50; polls through reader threads cost 800-1,000 us of CPU (the loop and the
threads trading the GIL) against ~230 us inline. A statement here takes 10-100 us; a
COMMIT adds the fsync of ``synchronous=FULL`` (an accepted evaluation survives a power
cut), which the loop waits for.

Writes: one connection (SQLite allows one writer at a time anyway); transactions are
serialised by an asyncio lock, so one is never interleaved with another even when its
body awaits something else. A write lock held by another process (``evaldock jobs``,
a second server on the same data) never blocks the loop: BEGIN and COMMIT retry with
``asyncio.sleep`` for up to ``BUSY_TIMEOUT_S``. Reads: a second connection on the loop
(WAL readers do not wait for the writer); ``read_off_loop`` runs long reads on reader
threads with connections of their own.

Each component (the core, every surface) owns a folder of numbered ``.sql`` files and
its own version line in ``schema_migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# Reader threads for read_off_loop, each with its own connection.
DEFAULT_READERS = 4
# How long a write waits for another process's write lock before it fails.
BUSY_TIMEOUT_S = 5.0

Row = sqlite3.Row
T = TypeVar("T")
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def utcnow() -> str:
    """Timestamps are stored as ISO-8601 UTC with a ``Z``, to the second, as the vendors show."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY  # extended codes too


class Cursor:
    """A statement's result, with the awaitable fetches the stores were written for."""

    __slots__ = ("_cur",)

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    async def fetchone(self) -> Row | None:
        row: Row | None = self._cur.fetchone()
        return row

    async def fetchall(self) -> list[Row]:
        return list(self._cur.fetchall())

    async def close(self) -> None:
        self._cur.close()


class Statement:
    """``await tx.execute(...)`` or ``async with tx.execute(...) as cur``; the statement
    runs when awaited or entered."""

    __slots__ = ("_cursor", "_run")

    def __init__(self, run: Callable[[], sqlite3.Cursor]) -> None:
        self._run = run
        self._cursor: Cursor | None = None

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self._start().__await__()

    async def _start(self) -> Cursor:
        return Cursor(self._run())

    async def __aenter__(self) -> Cursor:
        self._cursor = await self._start()
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class Transaction:
    """A write transaction: statements run on the writer; ``on_commit`` callbacks run
    once it has committed (a job submitted inside it wakes the runner only then, so a
    worker never looks for a row that is not yet visible)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._after: list[Callable[[], object]] = []

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Statement:
        args = tuple(params)
        return Statement(lambda: self.conn.execute(sql, args))

    async def executemany(self, sql: str, params: Iterable[Iterable[Any]]) -> None:
        self.conn.executemany(sql, (tuple(p) for p in params))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        row: Row | None = self.conn.execute(sql, tuple(params)).fetchone()
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    def on_commit(self, callback: Callable[[], object]) -> None:
        self._after.append(callback)


class Database:
    def __init__(self, path: Path, *, readers: int = DEFAULT_READERS) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._reader_count = max(1, readers)
        self._reads: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._loop_reader: sqlite3.Connection | None = None
        self._local = threading.local()
        # Serialises explicit transactions issued from concurrent tasks.
        self._tx_lock = asyncio.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        from .datadir import private_dir, private_file

        private_dir(self.path.parent)
        # The database holds signing secrets: owner-only before SQLite creates it (its
        # -wal and -shm files take the same mode).
        private_file(self.path)
        # busy_timeout 0: never block the loop; _retry_busy waits instead.
        conn = self._conn = _connect(self.path, busy_timeout_ms=0)
        await self._retry_busy(lambda: conn.execute("PRAGMA foreign_keys=ON"))
        # WAL lets readers proceed during a write; synchronous=FULL makes every commit
        # survive a crash of the process *and* of the machine: an accepted job is never lost.
        await self._retry_busy(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=FULL")
        await self._retry_busy(
            lambda: conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
            )
        )
        # A busy reader on the loop gives up at once and retries on a thread (5 s there).
        self._loop_reader = _read_only(self.path, busy_timeout_ms=0)
        self._reads = ThreadPoolExecutor(self._reader_count, thread_name_prefix="evaldock-read")

    async def close(self) -> None:
        if self._reads is not None:
            self._reads.shutdown(wait=True)
            self._reads = None
        for reader in self._reader_conns:
            reader.close()
        self._reader_conns = []
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _retry_busy(self, fn: Callable[[], T]) -> T:
        """``fn()``, retried while another connection holds the lock it needs (up to
        ``BUSY_TIMEOUT_S``), sleeping between tries instead of blocking the loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT_S
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or loop.time() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._tx_lock:
            conn = self.conn
            tx = Transaction(conn)
            await self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield tx
                # A failed COMMIT leaves the transaction open: retried, else rolled back.
                await self._retry_busy(lambda: conn.execute("COMMIT"))
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        for callback in tx._after:
            result = callback()
            if isinstance(result, Awaitable):
                await result

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One write statement in its own transaction; returns the rows it changed."""
        args = tuple(params)
        async with self._tx_lock:
            cur = await self._retry_busy(lambda: self.conn.execute(sql, args))
            return int(cur.rowcount)

    def _reader_conn(self) -> sqlite3.Connection:
        """This reader thread's own connection, opened on its first read."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _read_only(self.path, busy_timeout_ms=5000)
            self._local.conn = conn
            self._reader_conns.append(conn)
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)``, a few indexed queries, run on the event loop itself.

        Why inline: a poll is one or two primary-key lookups (10-30 us in SQLite), and
        handing them to a thread cost far more than the query: the reader threads and
        the loop traded the GIL on every hop, and a completed evaluation was served at
        0.12-0.15x a bare endpoint (800-1,000 us CPU a poll) against 0.5x with no hop.
        Work that may take long (a large scan, many queries) goes to
        :meth:`read_off_loop`; so does this when SQLite reports itself busy (WAL readers
        almost never are: a checkpoint resetting the log, recovery).
        """
        if self._loop_reader is None:
            raise RuntimeError("database is not open")
        try:
            return fn(self._loop_reader)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        return await self.read_off_loop(fn)

    async def read_off_loop(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on a reader thread (one hop for all its queries), for reads
        too long to run on the event loop."""
        if self._reads is None:
            raise RuntimeError("database is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, lambda: fn(self._reader_conn()))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        args = tuple(params)
        return await self.read(lambda conn: conn.execute(sql, args).fetchone())

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        args = tuple(params)
        return await self.read(lambda conn: conn.execute(sql, args).fetchall())

    async def migrate(self, component: str, package: str | Traversable) -> list[str]:
        """Apply the not-yet-applied ``NNNN_name.sql`` files of ``package``/migrations."""
        base = resources.files(package) if isinstance(package, str) else package
        folder = base / "migrations"
        if not folder.is_dir():
            return []
        files = sorted(
            (int(m.group(1)), f.name, f)
            for f in folder.iterdir()
            if (m := _MIGRATION_NAME.match(f.name))
        )
        rows = await self.fetchall(
            "SELECT version FROM schema_migrations WHERE component = ?", (component,)
        )
        done = {r["version"] for r in rows}
        applied = []
        for version, name, file in files:
            if version in done:
                continue
            script = file.read_text(encoding="utf-8")
            async with self.transaction() as tx:
                # executescript would COMMIT on its own; run statement by statement instead.
                for statement in _split_sql(script):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                    (component, version, name, utcnow()),
                )
            applied.append(name)
        return applied


def _connect(path: Path, *, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


def _read_only(path: Path, *, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = _connect(path, busy_timeout_ms=busy_timeout_ms)
    conn.execute("PRAGMA query_only=ON")
    return conn


def _split_sql(script: str) -> list[str]:
    """Split a migration on semicolons at line ends (migrations keep one statement per `;`)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().strip(";")]
