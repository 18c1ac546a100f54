"""SQLite state through aiosqlite: WAL, durable commits, versioned migrations.

One connection serves the whole process; aiosqlite runs it on its own thread, so
statements are serialised and a transaction is never interleaved with another.
Each component (the core, every surface) owns a folder of numbered ``.sql`` files and
its own version line in ``schema_migrations``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def utcnow() -> str:
    """Timestamps are stored as ISO-8601 UTC with a ``Z``, to the second, as the vendors show."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        # Serialises explicit transactions issued from concurrent tasks.
        self._tx_lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        # WAL lets readers proceed during a write; synchronous=FULL makes every commit
        # survive a crash of the process *and* of the machine: an accepted job is never lost.
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA synchronous=FULL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._conn.execute("PRAGMA busy_timeout=5000")
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL, PRIMARY KEY (component, version))"
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._tx_lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            else:
                await self.conn.execute("COMMIT")

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        async with self._tx_lock:
            await self.conn.execute(sql, tuple(params))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def migrate(self, component: str, package: str) -> list[str]:
        """Apply the not-yet-applied ``NNNN_name.sql`` files of ``package``/migrations."""
        folder = resources.files(package) / "migrations"
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
            async with self.transaction() as conn:
                # executescript would COMMIT on its own; run statement by statement instead.
                for statement in _split_sql(script):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?, ?)",
                    (component, version, name, utcnow()),
                )
            applied.append(name)
        return applied


def _split_sql(script: str) -> list[str]:
    """Split a migration on semicolons at line ends (migrations keep one statement per `;`)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().strip(";")]
