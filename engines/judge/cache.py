"""The judgement cache: SQLite keyed by a hash of the whole rendered request.

The key covers backend, model, template version, sampling parameters, output schema and
input, so a re-run of the same evaluation is answered from here, identically, without a
model call. Only successful, validated answers are stored: errors are never cached.
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
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.hits = 0
        self.misses = 0

    async def _open(self) -> aiosqlite.Connection | None:
        if self.path is None:
            return None
        async with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = await aiosqlite.connect(self.path)
                await self._conn.execute("PRAGMA journal_mode=WAL")
                await self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS judgements"
                    " (key TEXT PRIMARY KEY, value TEXT NOT NULL, signature TEXT NOT NULL)"
                )
                await self._conn.commit()
        return self._conn

    async def get(self, key: str) -> Any | None:
        conn = await self._open()
        if conn is None:
            return None
        async with conn.execute("SELECT value FROM judgements WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    async def put(self, key: str, value: Any, signature: str) -> None:
        conn = await self._open()
        if conn is None:
            return
        await conn.execute(
            "INSERT OR REPLACE INTO judgements VALUES (?, ?, ?)",
            (key, json.dumps(value), signature),
        )
        await conn.commit()

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
