"""Marqtune state: datasets, evaluations, models and log lines in SQLite; files on disk.

Uploaded files and their parsed form live in ``<data>/marqtune/datasets/<id>/``. Models
come from two places: the ``[marqtune.models]`` configuration table (read at start-up)
and the ``marqtune_models`` table (``evaldock marqtune add-model``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import jsonio
from ..db import Database, utcnow
from ..jobs import JobRunner

DATASET_JOB = "marqtune.dataset"
EVALUATION_JOB = "marqtune.evaluation"
CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)$")
CHECKPOINT_FILE = re.compile(r"^(epoch_\d+)\.(pt|pth|bin|safetensors|ckpt)$")
# Fixed namespace: a configured model without an explicit id keeps its id across restarts.
MODEL_NAMESPACE = uuid.UUID("6f1d8a52-3b0e-4d5c-9a4e-7c2b1e0f9d31")
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value))


# -- statuses (the spec's state table) ----------------------------------------------------

JOB_STATES = {
    "queued": ("Initializing", "Provisioning"),
    "running": ("Running", "Running"),
    "failed": ("Failed", "Failed"),
    "cancelled": ("Stopped", "Stopped"),
}


def job_state(job_status: str | None, done: str) -> tuple[str, str]:
    if job_status == "completed":
        return done, done
    return JOB_STATES.get(job_status or "", ("Initializing", "Provisioning"))


def dataset_state(row: Mapping[str, Any]) -> tuple[str, str]:
    if row["deleted_at"]:
        return "Deleted", "Deleted"
    if not row["uploaded_at"]:
        return "Initializing", "Uploading"
    return job_state(row["job_status"], "Ready")


def evaluation_state(row: Mapping[str, Any]) -> tuple[str, str]:
    if row["deleted_at"]:
        return "Deleted", "Deleted"
    return job_state(row["job_status"], "Finished")


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


class Store:
    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.root = data_dir / "marqtune"

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def upload_path(self, dataset_id: str) -> Path:
        return self.dataset_dir(dataset_id) / "upload"

    def parsed_path(self, dataset_id: str) -> Path:
        return self.dataset_dir(dataset_id) / "parsed.json"

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
        " FROM marqtune_datasets d LEFT JOIN jobs j ON j.id = d.id"
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
            await JobRunner.enqueue(conn, dataset_id, DATASET_JOB, tenant, 1)
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

    def remove_files(self, dataset_id: str) -> None:
        shutil.rmtree(self.dataset_dir(dataset_id), ignore_errors=True)

    async def create_evaluation(
        self, tenant: str, dataset_id: str, resolved: ResolvedModel, hyperparameters: Any
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
                    resolved.display,
                    resolved.model_id,
                    resolved.checkpoint,
                    resolved.load_model,
                    resolved.load_pretrained,
                    jsonio.encode(hyperparameters),
                    utcnow(),
                ),
            )
            await JobRunner.enqueue(conn, evaluation_id, EVALUATION_JOB, tenant, 1)
        return evaluation_id

    _EVALUATION = (
        "SELECT e.*, j.status AS job_status, j.error AS job_error, j.started_at,"
        " j.finished_at, j.attempts FROM marqtune_evaluations e JOIN jobs j ON j.id = e.id"
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


# -- models -----------------------------------------------------------------------------


class ModelConfigError(ValueError):
    """The [marqtune.models] table or a registration is unusable; says what to fix."""


@dataclass
class ModelEntry:
    id: str
    name: str
    base_model: str
    checkpoints: dict[str, str]  # epoch_N -> checkpoint file, in epoch order
    source: str  # "config" | "registered"
    tenant: str | None = None  # None: every API key sees it
    created_at: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def missing(self) -> list[str]:
        return [f"{c} ({p})" for c, p in self.checkpoints.items() if not os.path.isfile(p)]


def _epoch(name: str) -> int:
    m = CHECKPOINT_NAME.match(name)
    return int(m.group(1)) if m else -1


def checkpoints_from(value: Any, where: str) -> dict[str, str]:
    """``{epoch_N: file}`` from a folder of ``epoch_N.pt`` files (open_clip's training
    output) or from a table/mapping of names to files; sorted by epoch."""
    found: dict[str, str] = {}
    if isinstance(value, str | os.PathLike):
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise ModelConfigError(
                f"{where}: checkpoints folder not found: {folder} (give a folder of epoch_N.pt "
                "files or a table {epoch_1 = '/path/file.pt'})"
            )
        for f in sorted(folder.iterdir()):
            m = CHECKPOINT_FILE.match(f.name)
            if m and f.is_file():
                found.setdefault(m.group(1), str(f.resolve()))
        if not found:
            raise ModelConfigError(f"{where}: no epoch_N.pt checkpoint files in {folder}")
    elif isinstance(value, Mapping):
        for name, path in value.items():
            if not CHECKPOINT_NAME.match(str(name)):
                raise ModelConfigError(
                    f"{where}: checkpoint names are epoch_N (epoch_1, epoch_2, ...), not {name!r}"
                )
            found[str(name)] = str(Path(str(path)).expanduser().resolve())
        if not found:
            raise ModelConfigError(f"{where}: no checkpoints")
    else:
        raise ModelConfigError(
            f"{where}: checkpoints must be a folder of epoch_N.pt files or a table of files"
        )
    return dict(sorted(found.items(), key=lambda kv: _epoch(kv[0])))


def parse_models_table(table: Mapping[str, Any]) -> tuple[list[ModelEntry], dict[str, str]]:
    """``[marqtune.models]``: a table per marqtuned model, a string per base-model override.

    ::

        [marqtune.models]
        "Marqo/ViT-B-32.laion2b_s34b_b79k" = "/models/vit-b-32.bin"   # base name -> file
        [marqtune.models.my-tuned]
        base_model = "ViT-B-32"
        checkpoints = "/runs/my-tuned/checkpoints"   # or {epoch_1 = "/path/epoch_1.pt"}
        id = "..."                                    # optional fixed UUID
    """
    models: list[ModelEntry] = []
    overrides: dict[str, str] = {}
    for name, value in table.items():
        where = f"[marqtune.models] {name!r}"
        if isinstance(value, str):
            overrides[name] = str(Path(value).expanduser())
            continue
        if not isinstance(value, Mapping):
            raise ModelConfigError(f"{where} must be a file path (base model) or a table")
        base = str(value.get("base_model") or value.get("baseModel") or "").strip()
        if not base:
            raise ModelConfigError(f"{where} needs base_model (the open_clip architecture)")
        model_id = str(value.get("id") or uuid.uuid5(MODEL_NAMESPACE, name))
        if not is_uuid(model_id):
            raise ModelConfigError(f"{where}: id must be a UUID, not {model_id!r}")
        models.append(
            ModelEntry(
                id=model_id.lower(),
                name=str(name),
                base_model=base,
                checkpoints=checkpoints_from(value.get("checkpoints"), where),
                source="config",
                hyperparameters=dict(value.get("hyperparameters") or {}),
            )
        )
    ids = [m.id for m in models]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ModelConfigError(f"[marqtune.models] repeats model ids: {', '.join(dupes)}")
    return models, overrides


class ModelRegistry:
    """Configured models (fixed at start-up) plus registered ones (read per request, so a
    model added with the CLI while the server runs is visible at once)."""

    def __init__(self, db: Database, configured: Sequence[ModelEntry] = ()) -> None:
        self.db = db
        self.configured = {m.id: m for m in configured}

    async def visible(self, tenant: str | None) -> list[ModelEntry]:
        rows = await self.db.fetchall(
            "SELECT * FROM marqtune_models WHERE tenant IS NULL OR tenant = ? ORDER BY rowid",
            (tenant,),
        )
        return [*self.configured.values(), *(_model_from_row(r) for r in rows)]

    async def get(
        self, model_id: str, tenant: str | None, *, any_tenant: bool = False
    ) -> ModelEntry | None:
        """The model if ``tenant`` may use it (``any_tenant``: for signed URLs)."""
        model_id = model_id.lower()
        if model_id in self.configured:
            return self.configured[model_id]
        row = await self.db.fetchone(
            "SELECT * FROM marqtune_models WHERE id = ? AND (? OR tenant IS NULL OR tenant = ?)",
            (model_id, int(any_tenant), tenant),
        )
        return _model_from_row(row) if row else None

    async def by_name(self, name: str, tenant: str | None) -> ModelEntry | None:
        for m in await self.visible(tenant):
            if m.name == name:
                return m
        return None

    async def released(self, model_id: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT checkpoint FROM marqtune_released_checkpoints WHERE model_id = ?",
            (model_id,),
        )
        return sorted((r["checkpoint"] for r in rows), key=_epoch)

    async def release(self, model_id: str, checkpoint: str) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO marqtune_released_checkpoints VALUES (?, ?, ?)",
            (model_id, checkpoint, utcnow()),
        )

    async def delete(self, model_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM marqtune_models WHERE id = ?", (model_id,))
            await conn.execute(
                "DELETE FROM marqtune_released_checkpoints WHERE model_id = ?", (model_id,)
            )


def _model_from_row(row: Any) -> ModelEntry:
    return ModelEntry(
        id=row["id"],
        name=row["name"],
        base_model=row["base_model"],
        checkpoints=json.loads(row["checkpoints"]),
        source="registered",
        tenant=row["tenant"],
        created_at=row["created_at"],
    )


async def register_model(
    db: Database,
    name: str,
    base_model: str,
    checkpoints: Mapping[str, str],
    *,
    tenant: str | None = None,
    model_id: str | None = None,
) -> ModelEntry:
    """Insert a model (the CLI's ``add-model``) and its first log line."""
    model_id = (model_id or new_id()).lower()
    if not is_uuid(model_id):
        raise ModelConfigError(f"model id must be a UUID, not {model_id!r}")
    missing = [f"{c} ({p})" for c, p in checkpoints.items() if not os.path.isfile(p)]
    if missing:
        raise ModelConfigError(f"checkpoint files not found: {', '.join(missing)}")
    entry = ModelEntry(
        id=model_id,
        name=name,
        base_model=base_model,
        checkpoints=dict(checkpoints),
        source="registered",
        tenant=tenant,
        created_at=utcnow(),
    )
    existing = await db.fetchone("SELECT 1 FROM marqtune_models WHERE id = ?", (model_id,))
    if existing:
        raise ModelConfigError(f"a model with id {model_id} is already registered")
    await db.execute(
        "INSERT INTO marqtune_models (id, tenant, name, base_model, checkpoints, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (model_id, tenant, name, base_model, json.dumps(entry.checkpoints), entry.created_at),
    )
    await Logs(db).add(
        model_id,
        f"Registered {name!r}: base model {base_model}, checkpoints "
        + ", ".join(f"{c} = {p}" for c, p in entry.checkpoints.items()),
    )
    return entry


# -- base model names ---------------------------------------------------------------------


def known_architectures(extra_configs: Sequence[str] = ()) -> set[str] | None:
    """open_clip's architecture names, read from its package folder without importing it
    (mock mode never imports torch); None when open_clip is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.origin:
        return None
    names = {p.stem for p in (Path(spec.origin).parent / "model_configs").glob("*.json")}
    for entry in extra_configs:
        path = Path(str(entry)).expanduser()
        if path.is_dir():
            names.update(p.stem for p in path.glob("*.json"))
        else:
            names.add(path.stem)
    return names


@dataclass(frozen=True)
class ResolvedModel:
    display: str  # as the evaluation reports it: the base name or "{modelId}/{checkpoint}"
    load_model: str  # what the ranker loads
    load_pretrained: str | None = None
    model_id: str | None = None
    checkpoint: str | None = None
