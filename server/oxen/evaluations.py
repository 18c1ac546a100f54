"""Evaluation requests (v1 and v2 bodies), their rows in ``oxen_evaluations``, and the
record the API answers with (every field of the documented v1 response, plus v2's).

Status and progress live in the core's job row (same id, read through ``job_view``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ..db import Database, Transaction, utcnow
from ..jobs import JobView, StatusMap
from .errors import bad_request
from .settings import OxenSettings

EVALUATION_JOB = "oxen.evaluation"
EVALUATION_STATUSES = StatusMap(
    [
        ("queued", "queued"),
        ("running", "running"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
    ]
)
DEFAULT_COMMIT_MESSAGE = "Evaluation results"
_V2_FIELDS = ("input_type", "output_type", "model_id", "batch_size", "sample_count")
# Namespace for the stable uuids shown as repository_id / created_by.id.
_IDS = uuid.UUID("6f1c3c1e-6b0a-4f53-9a53-0e5d1f1a0c11")


@dataclass(frozen=True)
class EvalRequest:
    """A create request, normalised from either body generation."""

    api_version: int
    name: str
    prompt: str
    type: str  # "text" | "embeddings"
    model: str  # the vendor model name (v2: model_id resolved through [oxen.models])
    model_id: str | None
    is_sample: bool
    sample_count: int
    batch_size: int
    target_column: str
    target_branch: str | None
    target_path: str | None
    auto_commit: bool
    commit_message: str
    overwrite: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> EvalRequest:
        return EvalRequest(**json.loads(text))


def parse_request(body: dict[str, Any], options: OxenSettings) -> EvalRequest:
    """Read a v1 body (``type``, ``model``) or a v2 body (``input_type``/``output_type``,
    ``model_id``, ``sample_count``, ``batch_size``, ``target_path``)."""
    v2 = any(body.get(k) is not None for k in _V2_FIELDS[:3])
    kind = body.get("type") or body.get("output_type") or "text"
    model_id = body.get("model_id")
    model = body.get("model")
    if model is None and model_id is not None:
        model = options.models.get(model_id, model_id)
    if not model:
        raise bad_request(
            "model is required: name one of gpt-4o, gpt-4o-mini (type text) or"
            " text-embedding-3-small, text-embedding-3-large (type embeddings)"
        )
    # v1 always auto-commits unless told otherwise (the documented example does);
    # v2's default is false.
    auto_commit = body.get("auto_commit")
    if auto_commit is None:
        auto_commit = not v2
    target_branch = body.get("target_branch") or None
    return EvalRequest(
        api_version=2 if v2 else 1,
        name=body.get("name") or "",
        prompt=body["prompt"],
        type=kind,
        model=str(model),
        model_id=model_id,
        is_sample=bool(body.get("is_sample") or False),
        sample_count=int(body.get("sample_count") or options.sample_count),
        batch_size=int(body.get("batch_size") or options.batch_size),
        target_column=body["target_column"],
        target_branch=target_branch,
        target_path=body.get("target_path") or None,
        auto_commit=bool(auto_commit),
        commit_message=body.get("commit_message") or DEFAULT_COMMIT_MESSAGE,
        overwrite=bool(body.get("overwrite") or False),
    )


@dataclass(frozen=True)
class Source:
    """What the evaluation reads: a file at a pinned commit."""

    version: str  # the branch (or commit id) the URL named
    path: str
    commit: str  # the commit read, pinned at submission


class EvaluationRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self,
        tx: Transaction,
        eval_id: str,
        tenant: str,
        repo_id: int,
        request: EvalRequest,
        source: Source,
        model_ran: str,
        signature: str,
    ) -> None:
        await tx.execute(
            "INSERT INTO oxen_evaluations (id, tenant, repo_id, api_version, request,"
            " source_version, source_path, source_commit, model_ran, engine_signature,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                eval_id,
                tenant,
                repo_id,
                request.api_version,
                request.to_json(),
                source.version,
                source.path,
                source.commit,
                model_ran,
                signature,
                utcnow(),
            ),
        )

    async def get(self, eval_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        sql = "SELECT * FROM oxen_evaluations WHERE id = ?"
        args: list[Any] = [eval_id]
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        row = await self.db.fetchone(sql, args)
        return dict(row) if row else None

    async def for_repo(
        self, repo_id: int, page: int = 1, page_size: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the repository's evaluations, newest first, and how many in all."""
        rows = await self.db.fetchall(
            "SELECT * FROM oxen_evaluations WHERE repo_id = ? ORDER BY created_at DESC, id DESC"
            " LIMIT ? OFFSET ?",
            (repo_id, page_size, (page - 1) * page_size),
        )
        count = await self.db.fetchone(
            "SELECT COUNT(*) AS n FROM oxen_evaluations WHERE repo_id = ?", (repo_id,)
        )
        return [dict(r) for r in rows], int(count["n"]) if count else 0

    async def update(self, eval_id: str, tx: Transaction | None = None, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        args = [*values.values(), eval_id]
        sql = f"UPDATE oxen_evaluations SET {sets} WHERE id = ?"
        if tx is not None:
            await tx.execute(sql, args)
        else:
            await self.db.execute(sql, args)


def stable_id(*parts: object) -> str:
    return str(uuid.uuid5(_IDS, "\0".join(map(str, parts))))


def render(row: dict[str, Any], job: JobView | None, namespace: str) -> dict[str, Any]:
    """The evaluation as the Hub shows it (v1 fields; v2 fields too for a v2 request)."""
    req = EvalRequest.from_json(row["request"])
    status = EVALUATION_STATUSES.word(job.status) if job else "failed"
    error = row["error_message"] or (job.error if job and job.status == "failed" else None)
    completed_at = job.finished_at if job and job.status == "completed" else None
    prompt_tokens, completion_tokens = row["prompt_tokens"], row["completion_tokens"]
    out: dict[str, Any] = {
        "closing_commit": json.loads(row["closing_commit"]) if row["closing_commit"] else None,
        "commit_id": row["source_commit"],
        "commit_started_at": row["commit_started_at"],
        "completed_at": completed_at,
        "conflict_target_branch": row["conflict_target_branch"],
        "created_by": {
            "id": stable_id("tenant", row["tenant"]),
            "image": None,
            "name": namespace,
            "username": namespace,
        },
        # Local runs cost nothing.
        "credits_per_token": 0.0,
        "error_message": error,
        "id": row["id"],
        "inserted_at": row["created_at"],
        "is_sample": req.is_sample,
        "master_id": row["id"],
        "model": req.model,
        "name": req.name,
        "parent_id": None,
        "progress": {
            "processed": job.processed if job else 0,
            "total": job.total if job else 0,
        },
        "prompt": req.prompt,
        "queued_at": row["created_at"],
        "repository_id": stable_id("repo", row["repo_id"]),
        "resource": {"path": row["source_path"], "version": row["source_version"]},
        "sample_count": req.sample_count,
        "started_at": job.started_at if job else None,
        "status": status,
        "target_branch": req.target_branch,
        "target_column": req.target_column,
        "target_path": req.target_path,
        "tokens_used": prompt_tokens + completion_tokens,
        "type": req.type,
        # Evaluations run without a workspace here.
        "workspace_id": None,
        # evaldock extensions: what really ran, and the request's commit options.
        "model_ran": row["model_ran"],
        "engine_signature": row["engine_signature"],
        "auto_commit": req.auto_commit,
        "commit_message": req.commit_message,
        "overwrite": req.overwrite,
    }
    if req.api_version == 2:
        out.update(
            {
                "cancelled_at": job.finished_at if job and job.status == "cancelled" else None,
                "prompt_tokens_used": prompt_tokens,
                "completion_tokens_used": completion_tokens,
                "credits_used": 0.0,
                "input_type": "text",
                "output_type": req.type,
                "batch_size": req.batch_size,
                "model": {"id": req.model_id, "name": req.model},
            }
        )
    return out
