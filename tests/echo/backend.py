"""Echo's rules and state: items, each echoed by a job whose heavy step is a task."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from evaldock.server import jsonio
from evaldock.server.backend import Backend
from evaldock.server.db import utcnow
from evaldock.server.jobs import Job, StatusMap

from . import jobs

JOB_KIND = "echo.job"


class EchoSettings(msgspec.Struct, kw_only=True):
    """The ``[echo]`` table."""

    # A number the tests override through the environment (EVALDOCK_ECHO__SOMETHING=5).
    something: int = 3
    greeting: str = "hello"


# Echo's words for the job states, in order.
STATUSES = StatusMap(
    [
        ("queued", "pending"),
        ("running", "working"),
        ("completed", "done"),
        ("failed", "broken"),
        ("cancelled", "stopped"),
    ]
)


class EchoBackend(Backend[EchoSettings]):
    # -- jobs ------------------------------------------------------------------------------
    async def run_job(self, job: Job) -> None:
        """The echo job: the body's size is measured in a worker process (the shape of
        every job: read inputs here, compute in a task, commit here)."""
        row = await self.db.fetchone("SELECT body FROM echo_items WHERE id = ?", (job.id,))
        if row is None:  # reset while queued
            return
        size = await job.run_task(jobs.measure, row["body"], progress=False)
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE echo_items SET echoed = 1, size = ? WHERE id = ?", (size, job.id)
            )
            await job.progress(1, 1, conn=tx)

    async def reset(self, tenant: str | None) -> None:
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(f"SELECT id FROM echo_items {where}", args)
            await self.runner.forget(tx, [r["id"] for r in rows])
            await tx.execute(f"DELETE FROM echo_items {where}", args)

    # -- items -----------------------------------------------------------------------------
    async def create_item(self, tenant: str, name: str, body: Any) -> str:
        item_id = "it_" + secrets.token_hex(8)
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO echo_items (id, tenant, name, body, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (item_id, tenant, name, jsonio.encode(body), utcnow()),
            )
            await self.runner.submit(tx, item_id, JOB_KIND, tenant, 1)
        return item_id

    async def item(self, tenant: str, item_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT i.*, j.status AS job_status, j.processed, j.total"
            " FROM echo_items i JOIN job_view j ON j.id = i.id"
            " WHERE i.id = ? AND i.tenant = ?",
            (item_id, tenant),
        )
        if row is None:
            return None
        return {
            "id": row["id"],
            "name": row["name"],
            "body": jsonio.decode(row["body"]),
            "echoed": bool(row["echoed"]),
            "status": STATUSES.word(row["job_status"]),
            "progress": {"processed": row["processed"], "total": row["total"]},
            "created_at": row["created_at"],
        }

    async def items(self, tenant: str, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, name FROM echo_items WHERE tenant = ? ORDER BY rowid LIMIT ?",
            (tenant, limit),
        )
        return [dict(r) for r in rows]
