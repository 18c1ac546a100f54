"""Marqtune's ML-model registry: models from the ``[marqtune.models]`` configuration
table (fixed at start-up) and models registered with ``evaldock marqtune add-model``
(the ``marqtune_models`` table), with their epoch_N checkpoint files."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..db import Database, utcnow
from ..names import name_problem
from .store import Logs, is_uuid, new_id

CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)$")
CHECKPOINT_FILE = re.compile(r"^(epoch_\d+)\.(pt|pth|bin|safetensors|ckpt)$")
# Fixed namespace: a configured model without an explicit id keeps its id across restarts.
MODEL_NAMESPACE = uuid.UUID("6f1d8a52-3b0e-4d5c-9a4e-7c2b1e0f9d31")


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
        problem = name_problem(str(name), "model name")
        if problem is not None:  # shown back as modelName
            raise ModelConfigError(f"{where}: {problem}")
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

    async def for_one_key(self) -> list[ModelEntry]:
        """Registered models only one API key sees (the CLI lists them too)."""
        rows = await self.db.fetchall(
            "SELECT * FROM marqtune_models WHERE tenant IS NOT NULL ORDER BY rowid"
        )
        return [_model_from_row(r) for r in rows]

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
    problem = name_problem(name, "model name")
    if problem is not None:  # shown back as modelName and in every log line about it
        raise ModelConfigError(problem)
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
