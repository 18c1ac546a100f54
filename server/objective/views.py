"""The dashboard's read model of Objective evaluations and their judged items.

A case is one (query, object) pair: its input the query, its output the object, no
ideal; its one score the judge's relevance (0, 1, 2). A case fails when judged
irrelevant (0) or when judging it failed. An evaluation holds at most ``[objective]
max_items`` (10,000) items, so its cases are read through the primary key
(evaluation_id, idx) without an index on the score: 10,000 rows filter in ~2 ms.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .. import jsonio
from ..readmodel import (
    CaseRow,
    CasesPage,
    CasesQuery,
    Histogram,
    RunDetail,
    RunRow,
    RunsQuery,
)
from ..readsql import keyset, masked_tenant, run_row, runs_page, text_filter, text_of, where
from .store import JOB_KIND, STATUSES

SCORER = "relevance"
PASS = 1.0  # 0 = irrelevant fails; 1 (relevant) and 2 (highly relevant) pass
# A failed judgement has no score: it sorts and filters as -1.
_SCORE = "COALESCE(score, -1)"

_SELECT = (
    "SELECT e.id, e.tenant, e.eval_name, e.judge, e.judge_signature, e.item_count,"
    " e.created_at, j.status AS state, j.processed, j.total, j.started_at, j.finished_at,"
    " j.error FROM objective_evaluations e JOIN job_view j ON j.id = e.id"
)


def _metrics(conn: sqlite3.Connection, ids: list[str]) -> dict[str, dict[str, float]]:
    """Mean relevance and the share of relevant items, per evaluation."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    out: dict[str, dict[str, float]] = {}
    for r in conn.execute(
        "SELECT evaluation_id, AVG(score), AVG(score >= 1), AVG(score = 2)"
        f" FROM objective_items WHERE evaluation_id IN ({marks}) AND score IS NOT NULL"
        " GROUP BY evaluation_id",
        ids,
    ):
        out[r[0]] = {
            "relevance/mean": float(r[1]),
            "relevant/rate": float(r[2]),
            "highly_relevant/rate": float(r[3]),
        }
    return out


def _row(row: sqlite3.Row, metrics: dict[str, float]) -> RunRow:
    state = row["state"]
    return RunRow(
        surface="objective",
        tenant=masked_tenant(row["tenant"]),
        id=row["id"],
        name=row["eval_name"] or "",
        dataset=f"{row['item_count']} pairs",
        model=row["judge"],
        status=state,
        vendor_status=STATUSES.word(state),
        processed=int(row["processed"]),
        total=int(row["total"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=metrics,
        error=row["error"],
    )


class ObjectiveRunsView:
    surface = "objective"
    job_kind = JOB_KIND

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]:
        rows = runs_page(conn, _SELECT, query, "j.status", keyset(query, "e.created_at", "e.id"))
        metrics = _metrics(conn, [r["id"] for r in rows])
        return [_row(r, metrics.get(r["id"], {})) for r in rows]

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None:
        found = run_row(conn, _SELECT, "e.id", run_id)
        if found is None:
            return None
        row = _row(found, _metrics(conn, [run_id]).get(run_id, {}))
        return RunDetail(
            row=row,
            metrics=row.metrics,
            signature=found["judge_signature"],
            configuration={
                "eval_name": found["eval_name"],
                "judge": found["judge"],
                "items": found["item_count"],
            },
            scorers=[SCORER],
            pass_threshold=PASS,
        )

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        clauses: list[str] = ["evaluation_id = ?"]
        args: list[Any] = [run_id]
        if query.failed_only:
            clauses.append(f"{_SCORE} < ?")
            args.append(PASS)
        if query.min_score is not None:
            clauses.append(f"{_SCORE} >= ?")
            args.append(query.min_score)
        if query.max_score is not None:
            clauses.append(f"{_SCORE} <= ?")
            args.append(query.max_score)
        # The input is the item's query, the output its object (JSON text when an object,
        # as the cases table shows it); there is no ideal.
        search, sargs = text_filter(
            query,
            [
                "json_extract(CAST(item AS TEXT), '$.query')",
                "json_extract(CAST(item AS TEXT), '$.object')",
            ],
        )
        clauses.append(search)
        args.extend(sargs)
        base = where(*clauses)
        total = conn.execute(f"SELECT COUNT(*) FROM objective_items{base}", args).fetchone()[0]
        direction = "DESC" if query.order == "desc" else "ASC"
        order = f"idx {direction}" if query.sort == "idx" else f"{_SCORE} {direction}, idx"
        rows = []
        for r in conn.execute(
            "SELECT idx, item, score, label, explanation, error FROM objective_items"
            f"{base} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, query.limit, query.offset],
        ):
            item: dict[str, Any] = jsonio.decode(r["item"])
            score = r["score"]
            detail = r["error"] or " ".join(x for x in (r["label"], r["explanation"]) if x)
            rows.append(
                CaseRow(
                    idx=int(r["idx"]),
                    input=text_of(item.get("query")),
                    ideal=None,
                    output=text_of(item.get("object")),
                    scores={SCORER: None if score is None else float(score)},
                    failed=r["error"] is not None if score is None else score < PASS,
                    detail=detail,
                )
            )
        return CasesPage(rows, int(total), SCORER)

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]:
        counts = {"0": 0, "1": 0, "2": 0, "error": 0}
        for score, n in conn.execute(
            "SELECT score, COUNT(*) FROM objective_items WHERE evaluation_id = ?"
            " AND (score IS NOT NULL OR error IS NOT NULL) GROUP BY score",
            (run_id,),
        ):
            counts["error" if score is None else str(int(score))] = int(n)
        return [Histogram(SCORER, list(counts.items()))]
