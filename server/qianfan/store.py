"""Qianfan evaluation tasks, their units (one per model version), per-case results and
exports, in SQLite. The task's job id is its ``ame-...`` id; an export's is its own id."""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from .. import jsonio
from ..db import Database, Row, Transaction, utcnow
from ..jobs import JobRunner, StatusMap
from .datasets import new_id

EVAL_JOB = "qianfan.eval"
EXPORT_JOB = "qianfan.export"

# The console's task states for the core job states (the SDK's manager raises on any
# other word). PartlyDone (completed with failed inferences) and Stopping (a stop asked
# of a running task) are derived in :func:`task_state`.
EVAL_STATUSES = StatusMap(
    [
        ("queued", "Pending"),
        ("running", "Doing"),
        ("waiting", "DoingWithManualBegin"),
        ("completed", "Done"),
        ("failed", "Failed"),
        ("cancelled", "Stopped"),
    ]
)
EXPORT_STATUSES = StatusMap(
    [
        ("queued", "Pending"),
        ("running", "Uploading"),
        ("completed", "Done"),
        ("failed", "Fail"),
        ("cancelled", "Fail"),
    ]
)
# Report and result-list metric keys -> result columns.
METRIC_COLUMNS = {
    "accuracy": "accuracy",
    "f1Score": "f1_score",
    "rouge_1": "rouge_1",
    "rouge_2": "rouge_2",
    "rouge_l": "rouge_l",
    "bleu4": "bleu4",
}
_MAX_INT_ID = 2**31 - 1
# A result's served model: none when the dataset gave its prediction (NULL: a unit from
# before served models were recorded).
SERVED_MODEL = " CASE WHEN c.prediction IS NOT NULL THEN '' ELSE u.served_model END AS served_model"


def numeric_id(given: str) -> int:
    """The integer form of a model or version id: itself when numeric, else a stable
    31-bit number from its SHA-256 (the report carries both forms)."""
    if given.isascii() and given.isdigit() and int(given) <= _MAX_INT_ID:
        return int(given)
    return int(hashlib.sha256(given.encode()).hexdigest()[:7], 16)


def string_id(given: str, prefix: str) -> str:
    return f"{prefix}{given}" if given.isascii() and given.isdigit() else given


@dataclass
class Unit:
    model_id: str
    model_version_id: str
    model_name: str
    model_version: str
    backend: str | None
    # What generates its answers ("" for both when the dataset gives every prediction).
    served_model: str = ""
    generation_signature: str = ""


@dataclass
class Task:
    num: int
    id: str
    tenant: str
    name: str
    description: str
    dataset_id: str
    dataset_name: str
    eval_mode: str
    standard_conf: dict[str, Any]
    case_count: int
    stop_requested: bool
    metrics_signature: str
    judge_signature: str
    manual_finished: bool
    created_at: str
    job_status: str
    processed: int
    total: int
    job_error: str | None
    started_at: str | None
    finished_at: str | None
    failed_cases: int = 0
    # eval/create's computeResourceConf as given ({} for tasks from before it was kept).
    compute_conf: dict[str, Any] = field(default_factory=dict)

    @property
    def modes(self) -> list[str]:
        return [m for m in self.eval_mode.split(",") if m]

    @property
    def state(self) -> str:
        word: str = EVAL_STATUSES.word(self.job_status)
        if word == "Pending" and self.manual_finished:
            word = "Doing"  # resumed after the manual scores: not back to the queue's start
        if word == "Doing" and self.stop_requested:
            return "Stopping"
        if word == "Done" and self.failed_cases:
            return "PartlyDone"
        return word


class QianfanStore:
    def __init__(self, db: Database, runner: JobRunner) -> None:
        self.db = db
        self.runner = runner

    # -- datasets ---------------------------------------------------------------------------
    async def dataset(self, dataset_id: str, tenant: str) -> Row | None:
        return await self.db.fetchone(
            "SELECT * FROM qianfan_datasets WHERE id = ? AND (tenant IS NULL OR tenant = ?)",
            (dataset_id, tenant),
        )

    async def datasets(self, tenant: str | None) -> list[Row]:
        """A tenant's datasets and the shared ones; every dataset for None (the CLI)."""
        if tenant is None:
            return await self.db.fetchall("SELECT * FROM qianfan_datasets ORDER BY created_at, id")
        return await self.db.fetchall(
            "SELECT * FROM qianfan_datasets WHERE tenant IS NULL OR tenant = ?"
            " ORDER BY created_at, id",
            (tenant,),
        )

    # -- tasks ------------------------------------------------------------------------------
    async def create_task(
        self,
        tenant: str,
        *,
        name: str,
        description: str,
        dataset: Row,
        eval_mode: str,
        standard_conf: dict[str, Any],
        units: list[Unit],
        metrics_signature: str,
        judge_signature: str = "",
        compute_conf: dict[str, Any] | None = None,
    ) -> tuple[int, str]:
        eval_id = new_id("ame-")
        cases = int(dataset["case_count"])
        async with self.db.transaction() as tx:
            cur = await tx.execute(
                "INSERT INTO qianfan_evals (id, tenant, name, description, dataset_id,"
                " dataset_name, eval_mode, standard_conf, case_count, metrics_signature,"
                " judge_signature, created_at, compute_conf)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    eval_id,
                    tenant,
                    name,
                    description,
                    dataset["id"],
                    dataset["name"],
                    eval_mode,
                    jsonio.encode(standard_conf),
                    cases,
                    metrics_signature,
                    judge_signature,
                    utcnow(),
                    jsonio.encode(compute_conf or {}),
                ),
            )
            assert cur.lastrowid is not None  # an INSERT on a rowid table
            num = cur.lastrowid
            await tx.executemany(
                "INSERT INTO qianfan_units (eval_id, idx, id, report_id, model_id,"
                " model_version_id, model_num, model_version_num, model_name, model_version,"
                " backend, served_model, generation_signature)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        eval_id,
                        i,
                        new_id("ameu-"),
                        hashlib.sha256(f"{eval_id}/{i}".encode()).hexdigest()[:20],
                        u.model_id,
                        u.model_version_id,
                        numeric_id(u.model_id),
                        numeric_id(u.model_version_id),
                        u.model_name,
                        u.model_version,
                        u.backend,
                        u.served_model,
                        u.generation_signature,
                    )
                    for i, u in enumerate(units)
                ],
            )
            await self.runner.submit(tx, eval_id, EVAL_JOB, tenant, cases * len(units))
        return num, eval_id

    _SELECT = (
        "SELECT e.num, e.id, e.tenant, e.name, e.description, e.dataset_id, e.dataset_name,"
        " e.eval_mode, e.standard_conf, e.case_count, e.stop_requested, e.metrics_signature,"
        " e.judge_signature, e.manual_finished, e.created_at, e.compute_conf,"
        " j.status AS job_status,"
        " j.processed, j.total, j.error AS job_error,"
        " j.started_at, j.finished_at,"
        " (SELECT COUNT(*) FROM qianfan_results r WHERE r.eval_id = e.id"
        "  AND r.error IS NOT NULL) AS failed_cases"
        " FROM qianfan_evals e JOIN job_view j ON j.id = e.id"
    )

    @staticmethod
    def _task(row: Row) -> Task:
        values = dict(row)
        values["standard_conf"] = jsonio.decode(values["standard_conf"])
        values["stop_requested"] = bool(values["stop_requested"])
        values["manual_finished"] = bool(values["manual_finished"])
        stored = values["compute_conf"]
        values["compute_conf"] = jsonio.decode(stored) if stored else {}
        return Task(**values)

    async def task(self, tenant: str, ref: int | str) -> Task | None:
        """A task by its integer evalId or its ``ame-`` string (digits count as the int)."""
        key: int | str = ref
        where = "e.id = ?"
        if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
            where, key = "e.num = ?", int(ref)
            if key > 2**63 - 1:
                return None
        row = await self.db.fetchone(
            self._SELECT + f" WHERE {where} AND e.tenant = ?", (key, tenant)
        )
        return self._task(row) if row else None

    async def tasks_after(
        self, tenant: str, after: int | None, limit: int, reverse: bool, key: str
    ) -> list[Task]:
        """One page of a tenant's tasks by evalId (v2 marker paging): ``limit`` rows after
        (or, reversed, before) ``after``, matching ``key`` in name or id when given."""
        where: list[str] = ["e.tenant = ?"]
        args: list[Any] = [tenant]
        if after is not None:
            where.append("e.num < ?" if reverse else "e.num > ?")
            args.append(after)
        if key:
            where.append("(instr(e.name, ?) > 0 OR e.id = ?)")
            args += [key, key]
        order = "DESC" if reverse else "ASC"
        rows = await self.db.fetchall(
            self._SELECT + " WHERE " + " AND ".join(where) + f" ORDER BY e.num {order} LIMIT ?",
            [*args, limit],
        )
        return [self._task(r) for r in rows]

    # -- manual scores ----------------------------------------------------------------------
    async def inferred_cases(self, eval_id: str) -> set[tuple[int, int]]:
        rows = await self.db.fetchall(
            "SELECT unit_idx, case_idx FROM qianfan_results WHERE eval_id = ? AND error IS NULL",
            (eval_id,),
        )
        return {(r["unit_idx"], r["case_idx"]) for r in rows}

    async def save_manual(
        self,
        eval_id: str,
        scores: list[tuple[int, int, str, int]],
        impressions: list[tuple[int, str]],
        finish: bool,
        needed: int,
    ) -> tuple[int, bool]:
        """Store scores (unit, case, dimension, score) and impressions; returns how many
        (unit, case, dimension) scores the task holds and whether manual work is finished
        (``finish`` asked, or all ``needed`` scores are in)."""
        async with self.db.transaction() as tx:
            await tx.executemany(
                "INSERT OR REPLACE INTO qianfan_manual_scores VALUES (?, ?, ?, ?, ?)",
                [(eval_id, *s) for s in scores],
            )
            await tx.executemany(
                "INSERT OR REPLACE INTO qianfan_impressions VALUES (?, ?, ?)",
                [(eval_id, *i) for i in impressions],
            )
            row = await tx.fetchone(
                "SELECT COUNT(*) AS n FROM qianfan_manual_scores WHERE eval_id = ?", (eval_id,)
            )
            held = int(row["n"]) if row else 0
            finished = finish or held >= needed
            if finished:
                await tx.execute(
                    "UPDATE qianfan_evals SET manual_finished = 1 WHERE id = ?", (eval_id,)
                )
        return held, finished

    async def units(self, eval_id: str) -> list[Row]:
        return await self.db.fetchall(
            "SELECT * FROM qianfan_units WHERE eval_id = ? ORDER BY idx", (eval_id,)
        )

    async def unit_failures(self, eval_id: str) -> dict[int, tuple[int, str]]:
        """Per unit with failed inferences: how many, and the first reason."""
        rows = await self.db.fetchall(
            "SELECT unit_idx, COUNT(*) AS n, MIN(error) AS first FROM qianfan_results"
            " WHERE eval_id = ? AND error IS NOT NULL GROUP BY unit_idx",
            (eval_id,),
        )
        return {int(r["unit_idx"]): (int(r["n"]), str(r["first"])) for r in rows}

    async def request_stop(self, eval_id: str) -> None:
        await self.db.execute(
            "UPDATE qianfan_evals SET stop_requested = 1 WHERE id = ?", (eval_id,)
        )

    async def delete_tasks(self, eval_ids: list[str]) -> list[str]:
        """Delete tasks with their exports and jobs; returns the export ids, whose files
        the caller removes."""
        exports = await self._export_ids(eval_ids)
        async with self.db.transaction() as tx:
            await self.runner.forget(tx, [*eval_ids, *exports])
            await tx.executemany("DELETE FROM qianfan_evals WHERE id = ?", [(i,) for i in eval_ids])
        return exports

    async def _export_ids(self, eval_ids: list[str]) -> list[str]:
        if not eval_ids:
            return []
        marks = ",".join("?" * len(eval_ids))
        rows = await self.db.fetchall(
            f"SELECT id FROM qianfan_exports WHERE eval_id IN ({marks})", eval_ids
        )
        return [r["id"] for r in rows]

    async def result_page(
        self, eval_id: str, filters: dict[str, Any], page_no: int, page_size: int
    ) -> tuple[list[Row], int]:
        where: list[str] = ["r.eval_id = ?"]
        args: list[Any] = [eval_id]
        for key, column in [*METRIC_COLUMNS.items(), ("judgeScore", "judge_score")]:
            bounds = filters.get(key)
            if isinstance(bounds, dict):
                if "start" in bounds:
                    where.append(f"r.{column} >= ?")
                    args.append(bounds["start"])
                if "end" in bounds:
                    where.append(f"r.{column} <= ?")
                    args.append(bounds["end"])
        if filters.get("modelVersionIds"):
            ids = list(filters["modelVersionIds"])
            where.append(
                f"(u.model_version_num IN ({','.join('?' * len(ids))})"
                f" OR u.model_version_id IN ({','.join('?' * len(ids))}))"
            )
            args += [i if isinstance(i, int) else -1 for i in ids] + [str(i) for i in ids]
        if filters.get("evalUnitId"):
            units = list(filters["evalUnitId"])
            where.append(f"u.id IN ({','.join('?' * len(units))})")
            args += units
        order = "r.unit_idx, r.case_idx"
        sort = {**METRIC_COLUMNS, "judgeScore": "judge_score"}.get(str(filters.get("orderBy")))
        if sort:
            direction = "DESC" if str(filters.get("order", "")).lower() == "desc" else "ASC"
            order = f"r.{sort} {direction}, " + order
        joins = (
            " FROM qianfan_results r"
            " JOIN qianfan_units u ON u.eval_id = r.eval_id AND u.idx = r.unit_idx"
            " JOIN qianfan_evals e ON e.id = r.eval_id"
            " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
            " WHERE " + " AND ".join(where)
        )
        total_row = await self.db.fetchone("SELECT COUNT(*) AS n" + joins, args)
        rows = await self.db.fetchall(
            "SELECT r.*, u.id AS unit_id, u.model_id, u.model_version_id, u.model_num,"
            " u.model_version_num, u.model_name, u.model_version, e.num AS eval_num,"
            " c.prompt, c.reference,"
            + SERVED_MODEL
            + joins
            + f" ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, page_size, (page_no - 1) * page_size],
        )
        return rows, int(total_row["n"]) if total_row else 0

    # -- the eval job -----------------------------------------------------------------------
    async def eval_row(self, eval_id: str) -> Row | None:
        return await self.db.fetchone("SELECT * FROM qianfan_evals WHERE id = ?", (eval_id,))

    async def dataset_cases(self, dataset_id: str) -> list[Row]:
        return await self.db.fetchall(
            "SELECT idx, prompt, reference, prediction FROM qianfan_dataset_cases"
            " WHERE dataset_id = ? ORDER BY idx",
            (dataset_id,),
        )

    async def inferred_keys(self, eval_id: str) -> set[tuple[int, int]]:
        """(unit, case) of every stored inference, failed ones included."""
        rows = await self.db.fetchall(
            "SELECT unit_idx, case_idx FROM qianfan_results WHERE eval_id = ?", (eval_id,)
        )
        return {(r["unit_idx"], r["case_idx"]) for r in rows}

    @staticmethod
    async def save_inferences(tx: Transaction, rows: list[tuple[Any, ...]]) -> None:
        """(eval_id, unit_idx, case_idx, id, prediction, error) rows."""
        await tx.executemany(
            "INSERT OR REPLACE INTO qianfan_results (eval_id, unit_idx, case_idx, id,"
            " prediction, error) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def inference_failures(self, eval_id: str) -> tuple[int, str | None]:
        """How many inferences failed, and the first reason."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS n, MIN(error) AS first FROM qianfan_results"
            " WHERE eval_id = ? AND error IS NOT NULL",
            (eval_id,),
        )
        return (int(row["n"]), row["first"]) if row else (0, None)

    async def units_without_metrics(self, eval_id: str) -> list[int]:
        """Units whose rule metrics are not stored yet (a resumed task skips the rest)."""
        rows = await self.db.fetchall(
            "SELECT idx FROM qianfan_units WHERE eval_id = ? AND metrics IS NULL ORDER BY idx",
            (eval_id,),
        )
        return [int(r["idx"]) for r in rows]

    async def save_case_metrics(
        self, eval_id: str, unit_idx: int, rows: list[tuple[Any, ...]]
    ) -> None:
        """Per-case rule metrics: (case_idx, *values in METRIC_COLUMNS order) rows."""
        set_columns = ", ".join(f"{c} = ?" for c in METRIC_COLUMNS.values())
        async with self.db.transaction() as tx:
            await tx.executemany(
                f"UPDATE qianfan_results SET {set_columns}"
                " WHERE eval_id = ? AND unit_idx = ? AND case_idx = ?",
                [(*values, eval_id, unit_idx, case_idx) for case_idx, *values in rows],
            )

    async def save_unit_metrics(self, eval_id: str, unit_idx: int, means: dict[str, float]) -> None:
        await self.db.execute(
            "UPDATE qianfan_units SET metrics = ? WHERE eval_id = ? AND idx = ?",
            (jsonio.encode(means), eval_id, unit_idx),
        )

    async def unjudged(self, eval_id: str) -> list[Row]:
        """Inferred cases without a judge score yet (NULL: resumable)."""
        return await self.db.fetchall(
            "SELECT r.unit_idx, r.case_idx, r.prediction, c.prompt, c.reference"
            " FROM qianfan_results r JOIN qianfan_evals e ON e.id = r.eval_id"
            " JOIN qianfan_dataset_cases c ON c.dataset_id = e.dataset_id AND c.idx = r.case_idx"
            " WHERE r.eval_id = ? AND r.error IS NULL AND r.judge_score IS NULL"
            " ORDER BY r.unit_idx, r.case_idx",
            (eval_id,),
        )

    @staticmethod
    async def save_judgements(tx: Transaction, rows: list[tuple[Any, ...]]) -> None:
        """(score, reason, dimensions, eval_id, unit_idx, case_idx) rows."""
        await tx.executemany(
            "UPDATE qianfan_results SET judge_score = ?, judge_reason = ?,"
            " judge_dimensions = ? WHERE eval_id = ? AND unit_idx = ? AND case_idx = ?",
            rows,
        )

    # -- report statistics ------------------------------------------------------------------
    async def judge_scores(self, eval_id: str, unit_idx: int) -> list[int | None]:
        """The unit's judge scores over its inferred cases (None: not judged or invalid)."""
        rows = await self.db.fetchall(
            "SELECT judge_score FROM qianfan_results WHERE eval_id = ? AND unit_idx = ?"
            " AND error IS NULL",
            (eval_id, unit_idx),
        )
        return [
            None if r["judge_score"] is None or r["judge_score"] < 0 else int(r["judge_score"])
            for r in rows
        ]

    async def manual_scores(
        self, eval_id: str, unit_idx: int, dimensions: Container[str]
    ) -> tuple[list[dict[str, int | None]], str]:
        """Per inferred case of the unit, its scores by dimension (a case nobody scored has
        none); and the unit's subjective impression ("" when none)."""
        cases = await self.db.fetchall(
            "SELECT case_idx FROM qianfan_results WHERE eval_id = ? AND unit_idx = ?"
            " AND error IS NULL",
            (eval_id, unit_idx),
        )
        scores = await self.db.fetchall(
            "SELECT case_idx, dimension, score FROM qianfan_manual_scores"
            " WHERE eval_id = ? AND unit_idx = ?",
            (eval_id, unit_idx),
        )
        by_case: dict[int, dict[str, int | None]] = {r["case_idx"]: {} for r in cases}
        for s in scores:
            if s["case_idx"] in by_case and s["dimension"] in dimensions:
                by_case[s["case_idx"]][s["dimension"]] = s["score"]
        row = await self.db.fetchone(
            "SELECT text FROM qianfan_impressions WHERE eval_id = ? AND unit_idx = ?",
            (eval_id, unit_idx),
        )
        return list(by_case.values()), row["text"] if row else ""

    # -- exports ----------------------------------------------------------------------------
    async def create_export(self, tenant: str, eval_id: str, content: dict[str, Any]) -> str:
        # amemt-: the console's export ids (docs and the SDK's mock server); exports made
        # before this were ameex- and are still found by their id.
        export_id = new_id("amemt-")
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO qianfan_exports VALUES (?, ?, ?, ?, ?)",
                (export_id, tenant, eval_id, jsonio.encode(content), utcnow()),
            )
            await self.runner.submit(tx, export_id, EXPORT_JOB, tenant, 1)
        return export_id

    async def export(self, export_id: str, tenant: str | None) -> Row | None:
        sql = (
            "SELECT x.*, j.status AS job_status, j.error AS job_error FROM qianfan_exports x"
            " JOIN job_view j ON j.id = x.id WHERE x.id = ?"
        )
        args: list[Any] = [export_id]
        if tenant is not None:
            sql += " AND x.tenant = ?"
            args.append(tenant)
        return await self.db.fetchone(sql, args)

    # -- reset ------------------------------------------------------------------------------
    async def reset(self, tenant: str | None) -> list[str]:
        """Delete tasks and exports (one tenant's or all) with their jobs; a tenant's
        datasets too (shared ones only on a full reset). Returns the export ids, whose
        files the caller removes."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant else ("", ())
        ids = [
            r["id"] for r in await self.db.fetchall(f"SELECT id FROM qianfan_evals {where}", args)
        ]
        exports = await self._export_ids(ids)
        async with self.db.transaction() as tx:
            await self.runner.forget(tx, [*ids, *exports])
            await tx.executemany("DELETE FROM qianfan_evals WHERE id = ?", [(i,) for i in ids])
            await tx.execute(f"DELETE FROM qianfan_datasets {where}", args)
        return exports
