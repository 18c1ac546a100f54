"""Objective evaluations and their judged items in SQLite (the SQL of the surface)."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

from evaldock.engines.protocols import RelevanceJudge

from .. import jsonio
from ..db import Database, Row, Transaction, utcnow
from ..jobs import JobRunner, StatusMap

JOB_KIND = "objective.evaluation"
# Objective's words for the job states, in order (failed and cancelled both read "error").
STATUSES = StatusMap(
    [
        ("queued", "accepted"),
        ("running", "processing"),
        ("completed", "completed"),
        ("failed", "error"),
        ("cancelled", "error"),
    ]
)
_ALPHABET = string.ascii_letters + string.digits + "_-"


def new_evaluation_id() -> str:
    return "ev_" + "".join(secrets.choice(_ALPHABET) for _ in range(21))


@dataclass
class Evaluation:
    id: str
    eval_name: str | None
    judge: str
    judge_signature: str
    created_at: str
    item_count: int
    job_status: str
    processed: int
    job_error: str | None


class EvaluationStore:
    def __init__(self, db: Database, runner: JobRunner) -> None:
        self.db = db
        self.runner = runner

    async def create(
        self, tenant: str, eval_name: str | None, judge: RelevanceJudge, data: list[Any]
    ) -> Evaluation:
        evaluation_id = new_evaluation_id()
        created_at = utcnow()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO objective_evaluations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    evaluation_id,
                    tenant,
                    eval_name,
                    judge.name,
                    judge.signature,
                    len(data),
                    created_at,
                ),
            )
            await conn.executemany(
                "INSERT INTO objective_items (evaluation_id, idx, item) VALUES (?, ?, ?)",
                [(evaluation_id, i, jsonio.encode(item)) for i, item in enumerate(data)],
            )
            await self.runner.submit(conn, evaluation_id, JOB_KIND, tenant, len(data))
        return Evaluation(
            id=evaluation_id,
            eval_name=eval_name,
            judge=judge.name,
            judge_signature=judge.signature,
            created_at=created_at,
            item_count=len(data),
            job_status="queued",
            processed=0,
            job_error=None,
        )

    _SELECT = (
        "SELECT e.id, e.eval_name, e.judge, e.judge_signature, e.created_at, e.item_count,"
        " j.status AS job_status, j.processed, j.error AS job_error"
        " FROM objective_evaluations e JOIN job_view j ON j.id = e.id"
    )

    async def get(self, tenant: str, evaluation_id: str) -> Evaluation | None:
        row = await self.db.fetchone(
            self._SELECT + " WHERE e.id = ? AND e.tenant = ?", (evaluation_id, tenant)
        )
        return Evaluation(**dict(row)) if row else None

    async def page(self, tenant: str, page: int, limit: int) -> tuple[list[Evaluation], int]:
        total_row = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM objective_evaluations WHERE tenant = ?", (tenant,)
        )
        rows = await self.db.fetchall(
            self._SELECT + " WHERE e.tenant = ? ORDER BY e.rowid DESC LIMIT ? OFFSET ?",
            (tenant, limit, (page - 1) * limit),
        )
        return [Evaluation(**dict(r)) for r in rows], int(total_row["n"]) if total_row else 0

    async def items(self, evaluation_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT idx, item, score, label, explanation, error FROM objective_items"
            " WHERE evaluation_id = ? ORDER BY idx",
            (evaluation_id,),
        )
        return [dict(r) for r in rows]

    # -- the judging job ----------------------------------------------------------------------
    async def unjudged(self, evaluation_id: str) -> list[Row]:
        """Items with neither a judgement nor an error yet (resumable)."""
        return await self.db.fetchall(
            "SELECT idx, item FROM objective_items"
            " WHERE evaluation_id = ? AND score IS NULL AND error IS NULL ORDER BY idx",
            (evaluation_id,),
        )

    async def item_count(self, evaluation_id: str) -> int | None:
        row = await self.db.fetchone(
            "SELECT item_count FROM objective_evaluations WHERE id = ?", (evaluation_id,)
        )
        return int(row["item_count"]) if row else None

    @staticmethod
    async def save_judgements(tx: Transaction, rows: list[tuple[Any, ...]]) -> None:
        """(score, label, explanation, error, evaluation_id, idx) rows."""
        await tx.executemany(
            "UPDATE objective_items SET score=?, label=?, explanation=?, error=?"
            " WHERE evaluation_id=? AND idx=?",
            rows,
        )

    async def reset(self, tenant: str | None) -> None:
        """Delete evaluations (one tenant's or all) with their items and jobs."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant else ("", ())
        ids = [
            r["id"]
            for r in await self.db.fetchall(f"SELECT id FROM objective_evaluations {where}", args)
        ]
        async with self.db.transaction() as tx:
            await self.runner.forget(tx, ids)
            await tx.executemany(
                "DELETE FROM objective_evaluations WHERE id = ?", [(i,) for i in ids]
            )
