"""Shared set-up for the Oxen backend tests: a real migrated Database in a temp folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from evaldock.server.db import Database
from evaldock.server.oxen.blobs import Blob
from evaldock.server.oxen.store import OxenStore


@asynccontextmanager
async def open_store(tmp_path: Path) -> AsyncIterator[OxenStore]:
    db = Database(tmp_path / "oxen.sqlite3")
    await db.open()
    try:
        await db.migrate("oxen", "evaldock.server.oxen")
        yield OxenStore(db, tmp_path / "data")
    finally:
        await db.close()


def blob(store: OxenStore, data: bytes | str) -> Blob:
    return store.blobs.put_bytes(data.encode() if isinstance(data, str) else data)
