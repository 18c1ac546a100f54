"""Handlers of openapi/objective.yaml, one method per operationId: each parses the call,
asks the backend (backend.py: the evaluation lifecycle and the judging job) and renders
the answer as JSON or CSV; finished evaluations' answers are kept (server/answers.py)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from starlette.responses import Response

from .. import jsonio, negotiation
from ..surface import ApiRequest, Provider
from .backend import ObjectiveBackend
from .errors import ObjectiveErrors
from .settings import ObjectiveSettings
from .store import STATUSES, Evaluation

# Messages as Objective's documentation words them.
MESSAGES = {
    "accepted": "The evaluation has been accepted and processing has started.",
    "queued": "Your evaluation request has been accepted and is waiting to be processed.",
    "processing": "Your request is currently being processed.",
    "completed": "The evaluation has been completed.",
    "error": (
        "There was an error with your evaluation. Please try to run your evaluation again. "
        "We apologize for the inconvenience."
    ),
}
JUDGEMENT_COLUMNS = ("index", "query", "object_id", "score", "label", "explanation", "error")
LIST_COLUMNS = ("id", "status", "created_at", "eval_name", "judge")


def _metadata(ev: Evaluation) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "created_at": ev.created_at,
        "judge": ev.judge,
        "anton_version": ev.judge,
    }
    if ev.eval_name is not None:
        meta["eval_name"] = ev.eval_name
    # sacreBLEU-style: what produced the scores (judge, model, prompt version, sampling).
    meta["judge_signature"] = ev.judge_signature
    return meta


def _status(ev: Evaluation, has_item_errors: bool = False) -> str:
    word: str = STATUSES.word(ev.job_status)
    return "error" if word == "completed" and has_item_errors else word


class ObjectiveProvider(Provider):
    errors: ClassVar[ObjectiveErrors] = ObjectiveErrors()
    options: ObjectiveSettings
    backend: ObjectiveBackend

    async def reset(self, tenant: str | None) -> None:
        await self.backend.reset(tenant)

    # POST /v1/evaluations
    async def create_evaluation(self, req: ApiRequest) -> Response:
        eval_name = (req.body.get("configuration") or {}).get("eval_name")
        ev = await self.backend.create(req.tenant, eval_name, req.body["data"])
        return jsonio.JSONResponse(
            {
                "status": "accepted",
                "id": ev.id,
                "metadata": _metadata(ev),
                "message": MESSAGES["accepted"],
                "results": req.url_for(f"/v1/evaluations/{ev.id}"),
            }
        )

    # GET /v1/evaluations/{id}
    async def get_evaluation(self, req: ApiRequest) -> Response:
        # A finished evaluation cannot change: its answer is rendered once per variant.
        key = (req.path["id"], negotiation.choose(req.accept))
        stored = self.answers.get(req.tenant, key)
        if stored is not None:
            return stored
        ev = await self.backend.get(req.tenant, req.path["id"])
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        judgements: list[dict[str, Any]] | None = None
        if ev.job_status in ("completed", "failed", "cancelled"):
            judgements = []
            for it in await self.backend.items(ev.id):
                item = jsonio.decode(it["item"])
                verdict = (
                    {"score": it["score"], "label": it["label"], "explanation": it["explanation"]}
                    if it["score"] is not None
                    else None
                )
                # object_id always (null when the request sent none): Objective's own
                # evaluation client (objective-inc/search-evaluator) reads
                # judgement["object_id"] for every pair and stops with a KeyError without it.
                judged = {
                    "query": item.get("query"),
                    "object_id": item.get("object_id"),
                    "object": item.get("object"),
                    "judgement": verdict,
                }
                judgements.append(judged)
                if it["error"]:
                    errors.append(
                        {
                            "index": it["idx"],
                            "object_id": item.get("object_id"),
                            "message": it["error"],
                        }
                    )
                rows.append(
                    {
                        "index": it["idx"],
                        "query": item.get("query"),
                        "object_id": item.get("object_id"),
                        **(verdict or {}),
                        "error": it["error"],
                    }
                )
            if ev.job_error:
                errors.insert(0, {"message": ev.job_error})
            elif ev.job_status == "cancelled":
                errors.insert(0, {"message": "The evaluation was cancelled."})
        status = _status(ev, bool(errors))
        body: dict[str, Any] = {
            "id": ev.id,
            "status": status,
            "message": MESSAGES["queued" if status == "accepted" else status],
            "metadata": _metadata(ev),
            "progress": {"processed": ev.processed, "total": ev.item_count},
        }
        if judgements is not None:
            body["judgements"] = judgements
        if errors:
            body["errors"] = errors
        response = negotiation.respond(req.accept, body, rows=rows, columns=JUDGEMENT_COLUMNS)
        # Final: nothing moves a completed or failed job (a cancelled one may still be
        # failed by the control plane).
        if ev.job_status in ("completed", "failed"):
            self.answers.put(req.tenant, key, response)
        return response

    # GET /v1/evaluations
    async def list_evaluations(self, req: ApiRequest) -> Response:
        page, limit = int(req.query["page"]), int(req.query["limit"])
        evaluations, total = await self.backend.page(req.tenant, page, limit)
        summaries: list[dict[str, Any]] = [
            {"id": ev.id, "status": _status(ev), "metadata": _metadata(ev)} for ev in evaluations
        ]
        body = {
            "evaluations": summaries,
            "pagination": {
                "current_page": page,
                "total_pages": math.ceil(total / limit),
                "total_records": total,
            },
        }
        rows = [{"id": s["id"], "status": s["status"], **s["metadata"]} for s in summaries]
        return negotiation.respond(req.accept, body, rows=rows, columns=LIST_COLUMNS)
