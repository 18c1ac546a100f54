"""server/db.py: migrations once per component, transactions that always end, readers
that see committed writes, on_commit after commit only. Uses echo's migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from evaldock.server.db import Database
from tests.echo.helpers import echo_client, echo_settings


async def _open(tmp_path: Path) -> Database:
    db = Database(tmp_path / "db.sqlite3", readers=2)
    await db.open()
    await db.migrate("core", "evaldock.server")
    return db


def test_migrations_apply_once_per_component(tmp_path: Path) -> None:
    async def go() -> None:
        db = await _open(tmp_path)
        try:
            assert await db.migrate("echo", "tests.echo") == ["0001_echo.sql"]
            assert await db.migrate("echo", "tests.echo") == []
            rows = await db.fetchall(
                "SELECT component, version, name FROM schema_migrations WHERE component = 'echo'"
            )
            assert [tuple(r) for r in rows] == [("echo", 1, "0001_echo.sql")]
            # Another component has its own version line (and here its own tables clash).
            with pytest.raises(sqlite3.OperationalError, match="already exists"):
                await db.migrate("echo-copy", "tests.echo")
            assert (
                await db.fetchone("SELECT 1 FROM schema_migrations WHERE component = 'echo-copy'")
                is None
            )
            assert not db.conn.in_transaction
        finally:
            await db.close()

    asyncio.run(go())


def test_app_restart_does_not_reapply(tmp_path: Path) -> None:
    settings = echo_settings(tmp_path)
    for _ in range(2):
        with echo_client(settings) as c:
            db = c.app.state.ctx.db
            rows = c.portal.call(
                db.fetchall, "SELECT component, version FROM schema_migrations ORDER BY 1, 2"
            )
            echo_rows = [tuple(r) for r in rows if r["component"] == "echo"]
            assert echo_rows == [("echo", 1)]


def _other_writer(db: Database) -> sqlite3.Connection:
    """Another process's connection, holding the write lock."""
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_write_lock_held_elsewhere_waits_without_blocking_the_loop(tmp_path: Path) -> None:
    async def go() -> None:
        db = await _open(tmp_path)
        await db.execute("CREATE TABLE t (x INTEGER)")
        other = _other_writer(db)
        ticks = 0

        async def loop_alive() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        alive = asyncio.create_task(loop_alive())
        try:

            async def write() -> None:
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (1)")

            task = asyncio.create_task(write())
            await asyncio.sleep(0.2)
            assert not task.done(), "BEGIN did not wait for the other writer"
            assert ticks >= 5, "the event loop was blocked while waiting"
            other.execute("COMMIT")
            await asyncio.wait_for(task, 5)
            assert [r["x"] for r in await db.fetchall("SELECT x FROM t")] == [1]
        finally:
            alive.cancel()
            other.close()
            await db.close()

    asyncio.run(go())


def test_transaction_cancelled_waiting_or_inside_ends_cleanly(tmp_path: Path) -> None:
    async def go() -> None:
        db = await _open(tmp_path)
        await db.execute("CREATE TABLE t (x INTEGER)")
        entered = asyncio.Event()
        try:
            # Cancelled while waiting for another connection's write lock: never began.
            other = _other_writer(db)

            async def blocked() -> None:
                async with db.transaction():
                    entered.set()

            task = asyncio.create_task(blocked())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            other.execute("ROLLBACK")
            other.close()
            assert not entered.is_set()
            assert not db.conn.in_transaction and not db._tx_lock.locked()

            # Cancelled inside its body (awaiting something else): rolled back.
            async def inside() -> None:
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (1)")
                    entered.set()
                    await asyncio.Event().wait()

            task = asyncio.create_task(inside())
            await entered.wait()
            assert db.conn.in_transaction
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not db.conn.in_transaction, "writer left inside a transaction"
            assert not db._tx_lock.locked()
            assert await db.fetchall("SELECT * FROM t") == []
            async with db.transaction() as tx:  # the next transaction works
                await tx.execute("INSERT INTO t VALUES (2)")
            assert [r["x"] for r in await db.fetchall("SELECT x FROM t")] == [2]
        finally:
            await db.close()

    asyncio.run(go())


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    async def go() -> None:
        db = await _open(tmp_path)
        try:
            await db.execute("CREATE TABLE t (x INTEGER)")
            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (1)")
                    raise RuntimeError("boom")
            assert not db.conn.in_transaction
            assert await db.fetchall("SELECT * FROM t") == []
        finally:
            await db.close()

    asyncio.run(go())


def test_readers_see_committed_writes_only(tmp_path: Path) -> None:
    async def go() -> None:
        db = await _open(tmp_path)
        try:
            await db.execute("CREATE TABLE t (x INTEGER)")
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                # Readers are separate connections: the open write is invisible to them
                # (and they are not blocked by it: WAL).
                assert await db.fetchall("SELECT x FROM t") == []
                assert [r["x"] for r in await tx.fetchall("SELECT x FROM t")] == [1]
            assert [r["x"] for r in await db.fetchall("SELECT x FROM t")] == [1]
            await db.execute("INSERT INTO t VALUES (2)")
            row = await db.fetchone("SELECT COUNT(*) AS n FROM t")
            assert row is not None and row["n"] == 2
            # Readers are read-only.
            with pytest.raises(sqlite3.OperationalError):
                await db.fetchall("INSERT INTO t VALUES (3) RETURNING x")
        finally:
            await db.close()

    asyncio.run(go())


def test_on_commit_runs_after_commit_only(tmp_path: Path) -> None:
    async def go() -> None:
        db = await _open(tmp_path)
        try:
            await db.execute("CREATE TABLE t (x INTEGER)")
            seen: list[Any] = []

            async def visible() -> None:
                # Runs after COMMIT: a reader already sees the row.
                seen.append([r["x"] for r in await db.fetchall("SELECT x FROM t")])

            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                tx.on_commit(visible)
                tx.on_commit(lambda: seen.append("sync"))
                assert seen == []
            assert seen == [[1], "sync"]

            with pytest.raises(RuntimeError):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (2)")
                    tx.on_commit(lambda: seen.append("rolled back"))
                    raise RuntimeError
            assert seen == [[1], "sync"]
        finally:
            await db.close()

    asyncio.run(go())


def test_closed_database_says_so(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.sqlite3")
    with pytest.raises(RuntimeError, match="not open"):
        _ = db.conn
