"""The Spice surface's state: runs (``spice.eval.runs``), per-case results
(``spice.eval.results``), and the eval specs and datasets added at run time.

A run's status is its job's (read through ``job_view``), in Spice's words; accepting a
run and queueing its job is one transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import jsonio
from ..db import Database, Transaction, utcnow
from ..jobs import JobRunner, StatusMap
from .spicepod import EvalSpec

JOB_KIND = "spice.eval"

# The runtime's words for the job states, in order (spice.eval.runs.status).
STATUSES = StatusMap(
    [
        ("queued", "Queued"),
        ("running", "Running"),
        ("waiting", "Waiting"),
        ("completed", "Completed"),
        ("failed", "Failed"),
        ("cancelled", "Failed"),
    ]
)

_RUN_SELECT = (
    "SELECT r.*, j.status AS job_status, j.error AS job_error, j.finished_at,"
    " j.processed, j.total FROM spice_runs r LEFT JOIN job_view j ON j.id = r.id"
)


def spice_time(stamp: str | None) -> str | None:
    """The runtime's timestamps are seconds without a zone (Arrow ``Timestamp(s)``)."""
    return stamp.removesuffix("Z") if stamp else None


def new_run_id() -> str:
    """A random 32-hex id, as the runtime's trace ids."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Run:
    id: str
    tenant: str
    eval: str
    dataset: str
    model: str
    scorers: list[str]
    metrics: dict[str, float]
    status: str  # Spice's word
    error_message: str | None
    created_at: str
    completed_at: str | None
    spec: dict[str, Any]
    # What produced the scores (runs.run_signature), once the run completed.
    signature: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ("Completed", "Failed")

    @classmethod
    def of(cls, row: Any) -> Run:
        job_status = row["job_status"] or "failed"
        status: str = STATUSES.word(job_status)
        error = row["error_message"] or row["job_error"]
        if job_status == "cancelled" and not error:
            error = "the run was cancelled"
        return cls(
            id=row["id"],
            tenant=row["tenant"],
            eval=row["eval"],
            dataset=row["dataset"],
            model=row["model"],
            scorers=jsonio.decode(row["scorers"]),
            metrics=jsonio.decode(row["metrics"]) if row["metrics"] else {},
            status=status,
            error_message=error if status == "Failed" else None,
            created_at=spice_time(row["created_at"]) or "",
            completed_at=spice_time(row["completed_at"] or row["finished_at"]),
            spec=jsonio.decode(row["spec"]),
            signature=row["signature"],
        )


class SpiceStore:
    def __init__(self, db: Database, runner: JobRunner) -> None:
        self.db = db
        self.runner = runner

    # -- runs -----------------------------------------------------------------------------
    async def create_run(self, tenant: str, spec: dict[str, Any], cases: int) -> str:
        run_id = new_run_id()
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO spice_runs (id, tenant, eval, dataset, model, scorers, spec,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    tenant,
                    spec["eval"],
                    spec["dataset"],
                    spec["model"],
                    jsonio.encode(spec["scorers"]).decode(),
                    jsonio.encode(spec),
                    utcnow(),
                ),
            )
            await self.runner.submit(tx, run_id, JOB_KIND, tenant, cases)
        return run_id

    async def run(self, run_id: str, tenant: str | None = None) -> Run | None:
        sql, args = _RUN_SELECT + " WHERE r.id = ?", [run_id]
        if tenant is not None:
            sql += " AND r.tenant = ?"
            args.append(tenant)
        row = await self.db.fetchone(sql, args)
        return Run.of(row) if row else None

    async def clear_results(self, tx: Transaction, run_id: str) -> None:
        """Drop the run's results (a resumed run redoes all, in the transaction that
        stores them again)."""
        await tx.execute("DELETE FROM spice_results WHERE run_id = ?", (run_id,))

    async def add_results(self, tx: Transaction, rows: Sequence[tuple[Any, ...]]) -> None:
        await tx.executemany(
            "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input,"
            " actual, expected, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def finish_run(
        self, tx: Transaction, run_id: str, metrics: dict[str, float], signature: str
    ) -> None:
        """Record the run's metrics and the signature of what produced them."""
        await tx.execute(
            "UPDATE spice_runs SET metrics = ?, signature = ?, completed_at = ? WHERE id = ?",
            (jsonio.encode(metrics).decode(), signature, utcnow(), run_id),
        )

    # -- specs and datasets added at run time ------------------------------------------------
    async def specs(self, tenant: str) -> list[EvalSpec]:
        rows = await self.db.fetchall(
            "SELECT * FROM spice_specs WHERE tenant = ? ORDER BY name", (tenant,)
        )
        return [_spec(r) for r in rows]

    async def spec(self, tenant: str, name: str) -> EvalSpec | None:
        row = await self.db.fetchone(
            "SELECT * FROM spice_specs WHERE tenant = ? AND name = ?", (tenant, name)
        )
        return _spec(row) if row else None

    async def put_spec(
        self,
        tenant: str,
        spec: EvalSpec,
        dataset_rows: list[dict[str, Any]] | None,
        source: str | None,
    ) -> None:
        now = utcnow()
        async with self.db.transaction() as tx:
            if dataset_rows is not None or source is not None:
                await tx.execute(
                    "INSERT OR REPLACE INTO spice_datasets (tenant, name, rows, source,"
                    " created_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        tenant,
                        spec.dataset,
                        jsonio.encode(dataset_rows) if dataset_rows is not None else None,
                        source,
                        now,
                    ),
                )
            await tx.execute(
                "INSERT OR REPLACE INTO spice_specs (tenant, name, description, dataset,"
                " scorers, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    spec.name,
                    spec.description,
                    spec.dataset,
                    jsonio.encode(list(spec.scorers)).decode(),
                    now,
                ),
            )

    async def delete_spec(self, tenant: str, name: str) -> bool:
        return bool(
            await self.db.execute(
                "DELETE FROM spice_specs WHERE tenant = ? AND name = ?", (tenant, name)
            )
        )

    async def dataset(self, tenant: str, name: str) -> tuple[bytes | None, str | None] | None:
        """(rows JSON, file source) of a dataset added at run time, or None."""
        row = await self.db.fetchone(
            "SELECT rows, source FROM spice_datasets WHERE tenant = ? AND name = ?",
            (tenant, name),
        )
        return (row["rows"], row["source"]) if row else None

    # -- reset ----------------------------------------------------------------------------
    async def reset(self, tenant: str | None) -> list[str]:
        """Delete the tenant's (or everyone's) rows, cancelling runs still going; the
        ids of the runs deleted."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(f"SELECT id FROM spice_runs {where}", args)
            ids = [r["id"] for r in rows]
            await self.runner.forget(tx, ids)
            for table in ("spice_results", "spice_runs", "spice_specs", "spice_datasets"):
                await tx.execute(f"DELETE FROM {table} {where}", args)
        return ids


def _spec(row: Any) -> EvalSpec:
    return EvalSpec(
        row["name"], row["dataset"], tuple(jsonio.decode(row["scorers"])), row["description"]
    )


def result_rows(
    run_id: str,
    tenant: str,
    start: int,
    texts: Sequence[tuple[str, str, str]],
    scores: Mapping[str, Sequence[float]],
    now: str,
) -> list[tuple[Any, ...]]:
    """spice.eval.results rows of cases ``start``, ``start + 1``, ... (their ``texts``:
    input, the model's answer, the ideal), one per case x scorer: ``actual`` holds the
    answer and ``expected`` the ideal, as every runtime release after PR #4835."""
    return [
        (run_id, tenant, start + i, scorer, now, *text, float(values[start + i]))
        for scorer, values in scores.items()
        for i, text in enumerate(texts)
    ]
