"""The dashboard's read model of Marqtune evaluations (GCL metrics at each k).

An evaluation ranks the whole dataset and keeps only GCL's metrics (``output.json``):
no per-case rows, so its cases page is empty and says why. Deleted evaluations are left
out, as ``GET /evaluations`` leaves them out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from .. import jsonio
from ..readmodel import (
    CasesPage,
    CasesQuery,
    Histogram,
    RunDetail,
    RunRow,
    RunsQuery,
)
from ..readsql import keyset, masked_tenant, run_row, runs_page
from .store import EVALUATION_JOB, EVALUATION_STATUSES

_SELECT = (
    "SELECT e.id, e.tenant, e.dataset_id, d.name AS dataset_name, e.model, e.checkpoint,"
    " e.load_model, e.metrics, e.created_at, j.status AS state, j.processed, j.total,"
    " j.started_at, j.finished_at, j.error"
    " FROM marqtune_evaluations e JOIN job_view j ON j.id = e.id"
    " LEFT JOIN marqtune_datasets d ON d.id = e.dataset_id"
)
NOTE = (
    "Marqtune evaluations rank the whole dataset and keep GCL's metrics only: there are"
    " no per-case scores to show."
)


def flat_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """GCL's groups (``{"ndcg": {"NDCG@10": 0.4}, ...}``) as one ``name -> value``
    map; the summary repeats the groups' values as lists and is left out."""
    out: dict[str, float] = {}
    for group, values in (metrics or {}).items():
        if group == "summary":
            continue
        if isinstance(values, Mapping):
            out.update({k: float(v) for k, v in values.items() if isinstance(v, int | float)})
        elif isinstance(values, int | float):
            out[group] = float(values)
    return out


def headline(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """GCL's summary (mAP@1000, mrr@1000, NDCG@10, mERR, mRBPs), lists unwrapped."""
    summary = (metrics or {}).get("summary") or {}
    out = {}
    for name, value in summary.items():
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, int | float):
            out[name] = float(first)
    return out


def _row(row: sqlite3.Row) -> RunRow:
    state = row["state"]
    metrics = headline(jsonio.decode(row["metrics"]) if row["metrics"] else None)
    model = row["model"] + (f"@{row['checkpoint']}" if row["checkpoint"] else "")
    return RunRow(
        surface="marqtune",
        tenant=masked_tenant(row["tenant"]),
        id=row["id"],
        name=row["load_model"],
        dataset=row["dataset_name"] or row["dataset_id"],
        model=model,
        status=state,
        vendor_status=EVALUATION_STATUSES.word(state)[0],
        processed=int(row["processed"]),
        total=int(row["total"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=metrics,
        error=row["error"],
    )


class MarqtuneRunsView:
    surface = "marqtune"
    job_kind = EVALUATION_JOB

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]:
        page = keyset(query, "e.created_at", "e.id")
        rows = runs_page(conn, _SELECT, query, "j.status", page, "e.deleted_at IS NULL")
        return [_row(r) for r in rows]

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None:
        found = run_row(
            conn,
            _SELECT,
            "e.id",
            run_id,
            "e.deleted_at IS NULL",
            extra="e.hyperparameters, e.ranker_signature",
        )
        if found is None:
            return None
        row = _row(found)
        return RunDetail(
            row=row,
            metrics=flat_metrics(jsonio.decode(found["metrics"]) if found["metrics"] else None),
            signature=found["ranker_signature"],
            configuration={
                "datasetId": found["dataset_id"],
                "model": found["model"],
                "checkpoint": found["checkpoint"],
                "hyperparameters": jsonio.decode(found["hyperparameters"]),
            },
            scorers=[],
            note=NOTE,
        )

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        return CasesPage([], 0, "")

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]:
        return []
