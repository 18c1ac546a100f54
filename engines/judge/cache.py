"""The judgement cache: SQLite keyed by a hash of the whole rendered request.

The key covers backend, model, template version, sampling parameters, output schema and
input, so a re-run of the same evaluation is answered from here, identically, without a
model call. Only successful, validated answers are stored: errors are never cached.
It is a file of its own (``<data>/judge-cache.sqlite3``): deleting it loses nothing but
time, and its writes never contend with the job database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import aiosqlite


def cache_key(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class JudgeCache:
    """``path`` None turns caching off (every lookup misses, nothing is stored)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> aiosqlite.Connection | None:
        if self.path is None:
            return None
        if self._conn is not None:
            return self._conn
        async with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = await aiosqlite.connect(self.path)
                # WAL + NORMAL: commits cost no fsync, and several server processes can
                # share one cache file; a crash loses at most the last answers (re-asked).
                await conn.execute("PRAGMA journal_mode=WAL")
                await conn.execute("PRAGMA synchronous=NORMAL")
                await conn.execute("PRAGMA busy_timeout=5000")
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY,"
                    " value TEXT NOT NULL, signature TEXT NOT NULL,"
                    " created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
                )
                await conn.commit()
                self._conn = conn
        return self._conn

    async def get(self, key: str) -> Any | None:
        conn = await self._open()
        if conn is None:
            return None
        async with conn.execute("SELECT value FROM judgements WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return None if row is None else json.loads(row[0])

    async def put(self, key: str, value: Any, signature: str) -> None:
        conn = await self._open()
        if conn is None:
            return
        await conn.execute(
            "INSERT OR REPLACE INTO judgements (key, value, signature) VALUES (?, ?, ?)",
            (key, json.dumps(value, ensure_ascii=False), signature),
        )
        await conn.commit()

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
