"""The OpenAI surface's state: files, evals, runs and output items (SQL of this surface
only). A run's status is its job's (read through ``job_view``), in OpenAI's words;
accepting a run and queueing its job is one transaction.

Lists page as the client pages: ``after`` is the id of the last item of the previous
page, and the next page starts after that item in the list's order (rowid for creation
order, so two objects created in the same second keep their order).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import jsonio
from ..db import Database, Transaction
from ..jobs import JobRunner, StatusMap

JOB_KIND = "openai.run"

# OpenAI's words for the job states, in order (the runs.list status filter's values).
STATUSES = StatusMap(
    [
        ("queued", "queued"),
        ("running", "in_progress"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("cancelled", "canceled"),
    ]
)
JOB_STATES = {word: state for state, word in STATUSES.pairs}


def now() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    """``eval_<32 hex>``, ``evalrun_<32 hex>``: the shape of OpenAI's ids."""
    return prefix + secrets.token_hex(16)


def new_file_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "file-" + "".join(secrets.choice(alphabet) for _ in range(22))


def criterion_id(name: str) -> str:
    return f"{name}-{uuid.uuid4()}"


def _json(value: Any) -> bytes | None:
    return None if value is None else jsonio.encode(value)


def _load(value: bytes | None) -> Any:
    return None if value is None else jsonio.decode(value)


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    has_more: bool


@dataclass(frozen=True)
class Run:
    id: str
    tenant: str
    eval_id: str
    name: str
    model: str
    status: str  # OpenAI's word
    created_at: int
    data_source: dict[str, Any]
    metadata: dict[str, Any] | None
    rows: int
    counts: dict[str, int] | None
    per_criteria: list[dict[str, Any]] | None
    usage: list[dict[str, Any]] | None
    signature: dict[str, str] | None
    error: str | None

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "canceled")

    @classmethod
    def of(cls, row: Any) -> Run:
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            eval_id=row["eval_id"],
            name=row["name"],
            model=row["model"],
            status=STATUSES.word(row["job_status"] or "failed"),
            created_at=row["created_at"],
            data_source=jsonio.decode(row["data_source"]),
            metadata=_load(row["metadata"]),
            rows=row["rows"],
            counts=_load(row["counts"]),
            per_criteria=_load(row["per_criteria"]),
            usage=_load(row["usage"]),
            signature=_load(row["signature"]),
            error=row["job_error"],
        )


_RUN_SELECT = (
    "SELECT r.*, j.status AS job_status, j.error AS job_error FROM openai_runs r"
    " LEFT JOIN job_view j ON j.id = r.id"
)


async def _page(
    db: Database,
    select: str,
    where: str,
    args: list[Any],
    order_key: str,
    after_key: str | None,
    after_args: Sequence[Any],
    desc: bool,
    limit: int,
) -> Page:
    """``limit`` rows after the row the ``after_key`` subquery finds (none found: an
    empty last page, so a stale cursor ends the client's iteration instead of looping)."""
    sql, params = f"{select} WHERE {where}", list(args)
    if after_key is not None:
        found = await db.fetchone(after_key, after_args)
        if found is None:
            return Page([], False)
        sql += f" AND ({order_key}) {'<' if desc else '>'} ({', '.join('?' * len(found))})"
        params += list(found)
    direction = " DESC" if desc else ""
    sql += " ORDER BY " + ", ".join(f"{k.strip()}{direction}" for k in order_key.split(","))
    rows = await db.fetchall(sql + " LIMIT ?", [*params, limit + 1])
    return Page(list(rows[:limit]), len(rows) > limit)


class OpenAIStore:
    def __init__(self, db: Database, runner: JobRunner) -> None:
        self.db = db
        self.runner = runner

    # -- files ---------------------------------------------------------------------------
    async def add_file(
        self,
        tenant: str,
        file_id: str,
        filename: str,
        purpose: str,
        size: int,
        path: str,
        expires_at: int | None,
    ) -> dict[str, Any]:
        created = now()
        await self.db.execute(
            "INSERT INTO openai_files (id, tenant, filename, purpose, bytes, created_at,"
            " expires_at, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (file_id, tenant, filename, purpose, size, created, expires_at, path),
        )
        found = await self.file(tenant, file_id)
        assert found is not None
        return found

    async def file(self, tenant: str, file_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM openai_files WHERE id = ? AND tenant = ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (file_id, tenant, now()),
        )
        return dict(row) if row else None

    async def files(
        self, tenant: str, after: str | None, limit: int, desc: bool, purpose: str | None
    ) -> Page:
        where, args = "tenant = ? AND (expires_at IS NULL OR expires_at > ?)", [tenant, now()]
        if purpose:
            where += " AND purpose = ?"
            args.append(purpose)
        return await _page(
            self.db,
            "SELECT *, rowid AS seq FROM openai_files",
            where,
            args,
            "rowid",
            "SELECT rowid FROM openai_files WHERE id = ? AND tenant = ?" if after else None,
            (after, tenant),
            desc,
            limit,
        )

    async def delete_file(self, tenant: str, file_id: str) -> str | None:
        """The deleted file's path on disk, or None when there was no such file."""
        found = await self.file(tenant, file_id)
        if found is None:
            return None
        await self.db.execute(
            "DELETE FROM openai_files WHERE id = ? AND tenant = ?", (file_id, tenant)
        )
        return str(found["path"])

    # -- evals ---------------------------------------------------------------------------
    async def add_eval(
        self,
        tenant: str,
        name: str,
        metadata: Any,
        config: dict[str, Any],
        criteria: list[dict[str, Any]],
    ) -> str:
        eval_id = new_id("eval_")
        created = now()
        await self.db.execute(
            "INSERT INTO openai_evals (id, tenant, name, metadata, config, criteria,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                eval_id,
                tenant,
                name,
                _json(metadata),
                jsonio.encode(config),
                jsonio.encode(criteria),
                created,
                created,
            ),
        )
        return eval_id

    async def eval(self, tenant: str, eval_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM openai_evals WHERE id = ? AND tenant = ?", (eval_id, tenant)
        )
        return _eval_of(row) if row else None

    async def evals(
        self, tenant: str, after: str | None, limit: int, desc: bool, order_by: str
    ) -> Page:
        key = "updated_at, rowid" if order_by == "updated_at" else "rowid"
        page = await _page(
            self.db,
            "SELECT * FROM openai_evals",
            "tenant = ?",
            [tenant],
            key,
            f"SELECT {key} FROM openai_evals WHERE id = ? AND tenant = ?" if after else None,
            (after, tenant),
            desc,
            limit,
        )
        return Page([_eval_of(r) for r in page.rows], page.has_more)

    async def update_eval(self, tenant: str, eval_id: str, changes: dict[str, Any]) -> bool:
        sets: list[str] = ["updated_at = ?"]
        args: list[Any] = [now()]
        if "name" in changes:
            sets.append("name = ?")
            args.append(changes["name"])
        if "metadata" in changes:
            sets.append("metadata = ?")
            args.append(_json(changes["metadata"]))
        changed = await self.db.execute(
            f"UPDATE openai_evals SET {', '.join(sets)} WHERE id = ? AND tenant = ?",
            (*args, eval_id, tenant),
        )
        return bool(changed)

    async def delete_eval(self, tenant: str, eval_id: str) -> list[str] | None:
        """Delete the eval, its runs and their items; the runs' ids (None: no such eval)."""
        async with self.db.transaction() as tx:
            found = await tx.fetchone(
                "SELECT id FROM openai_evals WHERE id = ? AND tenant = ?", (eval_id, tenant)
            )
            if found is None:
                return None
            rows = await tx.fetchall("SELECT id FROM openai_runs WHERE eval_id = ?", (eval_id,))
            ids = [r["id"] for r in rows]
            await self.runner.forget(tx, ids)
            await tx.executemany("DELETE FROM openai_items WHERE run_id = ?", [(i,) for i in ids])
            await tx.execute("DELETE FROM openai_runs WHERE eval_id = ?", (eval_id,))
            await tx.execute("DELETE FROM openai_evals WHERE id = ?", (eval_id,))
        return ids

    # -- runs ----------------------------------------------------------------------------
    async def add_run(
        self,
        tenant: str,
        run_id: str,
        eval_id: str,
        name: str,
        model: str,
        data_source: dict[str, Any],
        metadata: Any,
        rows: int,
    ) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO openai_runs (id, tenant, eval_id, name, model, data_source,"
                " metadata, rows, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    tenant,
                    eval_id,
                    name,
                    model,
                    jsonio.encode(data_source),
                    _json(metadata),
                    rows,
                    now(),
                ),
            )
            await self.runner.submit(tx, run_id, JOB_KIND, tenant, rows)

    async def run(self, run_id: str, tenant: str | None = None) -> Run | None:
        sql, args = _RUN_SELECT + " WHERE r.id = ?", [run_id]
        if tenant is not None:
            sql += " AND r.tenant = ?"
            args.append(tenant)
        row = await self.db.fetchone(sql, args)
        return Run.of(row) if row else None

    async def runs(
        self, tenant: str, eval_id: str, after: str | None, limit: int, desc: bool, status: str
    ) -> Page:
        where, args = "r.tenant = ? AND r.eval_id = ?", [tenant, eval_id]
        if status:
            where += " AND j.status = ?"
            args.append(JOB_STATES[status])
        page = await _page(
            self.db,
            _RUN_SELECT,
            where,
            args,
            "r.rowid",
            "SELECT rowid FROM openai_runs WHERE id = ? AND eval_id = ?" if after else None,
            (after, eval_id),
            desc,
            limit,
        )
        return Page([Run.of(r) for r in page.rows], page.has_more)

    async def delete_run(self, tenant: str, eval_id: str, run_id: str) -> bool:
        async with self.db.transaction() as tx:
            found = await tx.fetchone(
                "SELECT id FROM openai_runs WHERE id = ? AND eval_id = ? AND tenant = ?",
                (run_id, eval_id, tenant),
            )
            if found is None:
                return False
            await self.runner.forget(tx, [run_id])
            await tx.execute("DELETE FROM openai_items WHERE run_id = ?", (run_id,))
            await tx.execute("DELETE FROM openai_runs WHERE id = ?", (run_id,))
        return True

    async def clear_items(self, tx: Transaction, run_id: str) -> None:
        """Drop a run's items (a resumed run grades all again, in the transaction that
        stores them again)."""
        await tx.execute("DELETE FROM openai_items WHERE run_id = ?", (run_id,))

    async def add_items(
        self, tx: Transaction, run_id: str, tenant: str, items: Sequence[dict[str, Any]]
    ) -> None:
        await tx.executemany(
            "INSERT INTO openai_items (run_id, idx, id, tenant, status, item, results, sample,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    it["idx"],
                    it["id"],
                    tenant,
                    it["status"],
                    jsonio.encode(it["item"]),
                    jsonio.encode(it["results"]),
                    _json(it["sample"]),
                    it["created_at"],
                )
                for it in items
            ],
        )

    async def finish_run(
        self,
        tx: Transaction,
        run_id: str,
        counts: dict[str, int],
        per_criteria: list[dict[str, Any]],
        usage: list[dict[str, Any]],
        signature: dict[str, str],
    ) -> None:
        await tx.execute(
            "UPDATE openai_runs SET counts = ?, per_criteria = ?, usage = ?, signature = ?"
            " WHERE id = ?",
            (
                jsonio.encode(counts),
                jsonio.encode(per_criteria),
                jsonio.encode(usage),
                jsonio.encode(signature),
                run_id,
            ),
        )

    # -- output items --------------------------------------------------------------------
    async def item(self, run_id: str, item_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM openai_items WHERE run_id = ? AND id = ?", (run_id, item_id)
        )
        return _item_of(row) if row else None

    async def items(
        self, run_id: str, after: str | None, limit: int, desc: bool, status: str
    ) -> Page:
        where, args = "run_id = ?", [run_id]
        if status:
            where += " AND status = ?"
            args.append(status)
        page = await _page(
            self.db,
            "SELECT * FROM openai_items",
            where,
            args,
            "idx",
            "SELECT idx FROM openai_items WHERE run_id = ? AND id = ?" if after else None,
            (run_id, after),
            desc,
            limit,
        )
        return Page([_item_of(r) for r in page.rows], page.has_more)

    # -- reset ---------------------------------------------------------------------------
    async def reset(self, tenant: str | None) -> tuple[list[str], list[str]]:
        """Delete the tenant's (or everyone's) rows, cancelling runs still going; the
        ids of the runs deleted and the paths of the files deleted."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        async with self.db.transaction() as tx:
            runs = [r["id"] for r in await tx.fetchall(f"SELECT id FROM openai_runs {where}", args)]
            files = [
                r["path"] for r in await tx.fetchall(f"SELECT path FROM openai_files {where}", args)
            ]
            await self.runner.forget(tx, runs)
            for table in ("openai_items", "openai_runs", "openai_evals", "openai_files"):
                await tx.execute(f"DELETE FROM {table} {where}", args)
        return runs, files


def _eval_of(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "metadata": _load(row["metadata"]),
        "config": jsonio.decode(row["config"]),
        "criteria": jsonio.decode(row["criteria"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _item_of(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "idx": row["idx"],
        "status": row["status"],
        "item": jsonio.decode(row["item"]),
        "results": jsonio.decode(row["results"]),
        "sample": _load(row["sample"]),
        "created_at": row["created_at"],
    }
