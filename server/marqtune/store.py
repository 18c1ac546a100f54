"""Marqtune state: datasets, evaluations, models and log lines in SQLite; files on disk.

Uploaded files and their parsed form live in ``<data>/marqtune/datasets/<id>/``. Models
come from two places: the ``[marqtune.models]`` configuration table (read at start-up)
and the ``marqtune_models`` table (``evaldock marqtune add-model``). SQL only: the rules
live in :mod:`.backend`.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import jsonio
from ..db import Database, utcnow
from ..jobs import JobRunner, JobState, StatusMap

DATASET_JOB = "marqtune.dataset"
EVALUATION_JOB = "marqtune.evaluation"
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value))


# -- statuses (the spec's state table) ----------------------------------------------------

# (status, secondaryStatus) per job state, in the order a job moves through them.
DATASET_STATUSES = StatusMap(
    [
        ("queued", ("Initializing", "Provisioning")),
        ("running", ("Running", "Running")),
        ("completed", ("Ready", "Ready")),
        ("failed", ("Failed", "Failed")),
        ("cancelled", ("Stopped", "Stopped")),
    ]
)
EVALUATION_STATUSES = StatusMap(
    [
        ("queued", ("Initializing", "Provisioning")),
        ("running", ("Running", "Running")),
        ("completed", ("Finished", "Finished")),
        ("failed", ("Failed", "Failed")),
        ("cancelled", ("Stopped", "Stopped")),
    ]
)


def _state(statuses: StatusMap, job_status: str | None) -> tuple[str, str]:
    state: tuple[str, str] = statuses.word(job_status or JobState.QUEUED)
    return state


def dataset_state(row: Mapping[str, Any]) -> tuple[str, str]:
    if row["deleted_at"]:
        return "Deleted", "Deleted"
    if not row["uploaded_at"]:
        return "Initializing", "Uploading"
    return _state(DATASET_STATUSES, row["job_status"])


def evaluation_state(row: Mapping[str, Any]) -> tuple[str, str]:
    if row["deleted_at"]:
        return "Deleted", "Deleted"
    return _state(EVALUATION_STATUSES, row["job_status"])


# -- log lines --------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


class Logs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, resource_id: str, message: str) -> None:
        # One statement, so the strictly increasing timestamp cannot race another writer.
        await self.db.execute(
            "INSERT INTO marqtune_logs (resource_id, ts, message)"
            " SELECT ?, MAX(?, COALESCE(MAX(ts) + 1, 0)), ? FROM marqtune_logs"
            " WHERE resource_id = ?",
            (resource_id, now_ms(), message, resource_id),
        )

    async def read(
        self, resource_id: str, start: int | None = None, end: int | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT ts, message FROM marqtune_logs WHERE resource_id = ?"
            " AND ts >= ? AND ts <= ? ORDER BY ts",
            (resource_id, start if start is not None else 0, end if end is not None else 2**62),
        )
        return [{"timestamp": int(r["ts"]), "message": r["message"]} for r in rows]

    async def text(self, resource_id: str) -> str:
        lines = []
        for entry in await self.read(resource_id):
            when = datetime.fromtimestamp(entry["timestamp"] / 1000, UTC)
            lines.append(f"{when.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {entry['message']}\n")
        return "".join(lines)


# -- datasets and evaluations -----------------------------------------------------------


class DatasetUnusable(Exception):
    """Why a dataset cannot be evaluated (the provider renders the seed page's text)."""

    def __init__(self, reason: str, dataset_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.dataset_id = dataset_id


class Store:
    def __init__(self, db: Database, runner: JobRunner, root: Path) -> None:
        self.db = db
        self.runner = runner
        self.root = root  # the surface's data folder, <data>/marqtune

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def upload_path(self, dataset_id: str) -> Path:
        return self.dataset_dir(dataset_id) / "upload"

    def parsed_path(self, dataset_id: str) -> Path:
        """The parsed dataset: a folder of Arrow files (:mod:`.columnar`); versions before
        it wrote ``parsed.json`` beside it, converted when first evaluated."""
        return self.dataset_dir(dataset_id) / "parsed"

    def work_dir(self, evaluation_id: str) -> Path:
        """An evaluation's work in progress (its vectors and resume state)."""
        return self.root / "work" / evaluation_id

    def remove_work(self, evaluation_id: str) -> None:
        shutil.rmtree(self.work_dir(evaluation_id), ignore_errors=True)

    async def create_dataset(self, tenant: str, body: Mapping[str, Any]) -> str:
        dataset_id = new_id()
        await self.db.execute(
            "INSERT INTO marqtune_datasets (id, tenant, name, dataset_type, data_schema,"
            " query_columns, result_columns, image_download_headers, normalize_urls,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dataset_id,
                tenant,
                body["datasetName"],
                body["datasetType"],
                jsonio.encode(body["dataSchema"]),
                _maybe_json(body.get("queryColumns")),
                _maybe_json(body.get("resultColumns")),
                _maybe_json(body.get("imageDownloadHeaders")),
                int(body.get("normalizeUrls", True)),
                utcnow(),
            ),
        )
        return dataset_id

    _DATASET = (
        "SELECT d.*, j.status AS job_status, j.error AS job_error"
        " FROM marqtune_datasets d LEFT JOIN job_view j ON j.id = d.id"
    )

    async def dataset(self, dataset_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        sql, args = self._DATASET + " WHERE d.id = ?", [dataset_id]
        if tenant is not None:
            sql += " AND d.tenant = ?"
            args.append(tenant)
        row = await self.db.fetchone(sql, args)
        return _decode_row(row) if row else None

    async def datasets(self, tenant: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            self._DATASET + " WHERE d.tenant = ? AND d.deleted_at IS NULL ORDER BY d.rowid DESC",
            (tenant,),
        )
        return [_decode_row(r) for r in rows]

    async def accept_upload(self, dataset_id: str, tenant: str, tmp: Path, size: int) -> bool:
        """Move the received file in place and queue its validation; False if it already
        had one (the database decides, so two concurrent uploads cannot both win)."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE marqtune_datasets SET uploaded_at = ?, file_size = ?"
                " WHERE id = ? AND uploaded_at IS NULL AND deleted_at IS NULL",
                (utcnow(), size, dataset_id),
            )
            if not cur.rowcount:
                return False
            os.replace(tmp, self.upload_path(dataset_id))
            await self.runner.submit(conn, dataset_id, DATASET_JOB, tenant, 1)
        return True

    async def dataset_validated(
        self, dataset_id: str, file_format: str, stats: Mapping[str, int]
    ) -> None:
        await self.db.execute(
            "UPDATE marqtune_datasets SET file_format = ?, stats = ? WHERE id = ?",
            (file_format, jsonio.encode(dict(stats)), dataset_id),
        )

    async def mark_dataset_deleted(self, dataset_id: str) -> None:
        await self.db.execute(
            "UPDATE marqtune_datasets SET deleted_at = COALESCE(deleted_at, ?) WHERE id = ?",
            (utcnow(), dataset_id),
        )

    async def evaluation_dataset(self, dataset_id: str, tenant: str) -> dict[str, Any]:
        """The dataset if an evaluation may start on it; else :class:`DatasetUnusable`
        with the reason (the backend decides, the provider renders)."""
        dataset = await self.dataset(dataset_id.lower(), tenant)
        if dataset is None or dataset["deleted_at"]:
            raise DatasetUnusable("not_found", dataset_id)
        if dataset["dataset_type"] != "evaluation":
            raise DatasetUnusable("not_evaluation")
        status, _ = dataset_state(dataset)
        if status in ("Failed", "Stopped"):
            raise DatasetUnusable("failed")
        if status != "Ready":
            raise DatasetUnusable("not_ready")
        return dataset

    async def reset(self, tenant: str | None) -> list[str]:
        """Delete datasets and evaluations (one tenant's, or all) with their jobs, logs
        and files; returns the dataset ids whose folders the caller removes."""
        where, args = ("WHERE tenant = ?", (tenant,)) if tenant else ("", ())
        datasets = [
            r["id"]
            for r in await self.db.fetchall(f"SELECT id FROM marqtune_datasets {where}", args)
        ]
        evaluations = [
            r["id"]
            for r in await self.db.fetchall(f"SELECT id FROM marqtune_evaluations {where}", args)
        ]
        ids = datasets + evaluations
        async with self.db.transaction() as tx:
            await self.runner.forget(tx, ids)
            await tx.executemany(
                "DELETE FROM marqtune_logs WHERE resource_id = ?", [(i,) for i in ids]
            )
            await tx.executemany(
                "DELETE FROM marqtune_evaluations WHERE id = ?", [(i,) for i in evaluations]
            )
            await tx.executemany(
                "DELETE FROM marqtune_datasets WHERE id = ?", [(i,) for i in datasets]
            )
        for evaluation_id in evaluations:  # their jobs are forgotten: nothing resumes
            self.remove_work(evaluation_id)
        return datasets

    def remove_files(self, dataset_id: str) -> None:
        shutil.rmtree(self.dataset_dir(dataset_id), ignore_errors=True)

    async def create_evaluation(
        self,
        tenant: str,
        dataset_id: str,
        hyperparameters: Any,
        *,
        model: str,
        model_id: str | None,
        checkpoint: str | None,
        load_model: str,
        load_pretrained: str | None,
    ) -> str:
        evaluation_id = new_id()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO marqtune_evaluations (id, tenant, dataset_id, model, model_id,"
                " checkpoint, load_model, load_pretrained, hyperparameters, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    evaluation_id,
                    tenant,
                    dataset_id,
                    model,
                    model_id,
                    checkpoint,
                    load_model,
                    load_pretrained,
                    jsonio.encode(hyperparameters),
                    utcnow(),
                ),
            )
            await self.runner.submit(conn, evaluation_id, EVALUATION_JOB, tenant, 1)
        return evaluation_id

    _EVALUATION = (
        "SELECT e.*, j.status AS job_status, j.error AS job_error, j.started_at,"
        " j.finished_at, j.attempts FROM marqtune_evaluations e JOIN job_view j ON j.id = e.id"
    )

    async def evaluation(
        self, evaluation_id: str, tenant: str | None = None
    ) -> dict[str, Any] | None:
        sql, args = self._EVALUATION + " WHERE e.id = ?", [evaluation_id]
        if tenant is not None:
            sql += " AND e.tenant = ?"
            args.append(tenant)
        row = await self.db.fetchone(sql, args)
        return _decode_row(row) if row else None

    async def evaluations(self, tenant: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            self._EVALUATION + " WHERE e.tenant = ? AND e.deleted_at IS NULL ORDER BY e.rowid DESC",
            (tenant,),
        )
        return [_decode_row(r) for r in rows]

    async def set_metrics(
        self, evaluation_id: str, metrics: Mapping[str, Any] | None, signature: str | None
    ) -> None:
        await self.db.execute(
            "UPDATE marqtune_evaluations SET metrics = ?, ranker_signature = ? WHERE id = ?",
            (None if metrics is None else jsonio.encode(metrics), signature, evaluation_id),
        )

    async def mark_evaluation_deleted(self, evaluation_id: str) -> None:
        await self.db.execute(
            "UPDATE marqtune_evaluations SET deleted_at = COALESCE(deleted_at, ?), metrics = NULL"
            " WHERE id = ?",
            (utcnow(), evaluation_id),
        )


_JSON_COLUMNS = (
    "data_schema",
    "query_columns",
    "result_columns",
    "image_download_headers",
    "stats",
    "hyperparameters",
    "metrics",
    "checkpoints",
)


def _maybe_json(value: Any) -> bytes | None:
    return None if value is None else jsonio.encode(value)


def _decode_row(row: Any) -> dict[str, Any]:
    out = dict(row)
    for key in _JSON_COLUMNS:
        if out.get(key) is not None:
            out[key] = jsonio.decode(out[key])
    return out
