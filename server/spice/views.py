"""The dashboard's read model of Spice runs (``spice.eval.runs`` / ``eval.results``).

The only SQL the dashboard runs on Spice's tables (see server/readmodel.py
for the paging: keyset on runs, covering-index LIMIT/OFFSET on cases).
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
from ..readsql import (
    keyset,
    masked_tenant,
    run_row,
    runs_page,
    score_filter,
    tenths,
    text_filter,
    where,
)
from .store import JOB_KIND, STATUSES

# The built-in scorers give 1 to a full match; anything less fails the case (the cases
# table's "failed only").
PASS = 1.0

_SELECT = (
    "SELECT r.id, r.tenant, r.eval, r.dataset, r.model, r.metrics, r.error_message,"
    " r.created_at, r.completed_at, COALESCE(j.status, 'failed') AS state,"
    " COALESCE(j.processed, 0) AS processed, COALESCE(j.total, 0) AS total,"
    " j.started_at, j.finished_at, j.error AS job_error"
    " FROM spice_runs r LEFT JOIN job_view j ON j.id = r.id"
)


def _row(row: sqlite3.Row) -> RunRow:
    state = row["state"]
    return RunRow(
        surface="spice",
        tenant=masked_tenant(row["tenant"]),
        id=row["id"],
        name=row["eval"],
        dataset=row["dataset"],
        model=row["model"],
        status=state,
        vendor_status=STATUSES.word(state),
        processed=int(row["processed"]),
        total=int(row["total"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["completed_at"] or row["finished_at"],
        metrics=jsonio.decode(row["metrics"]) if row["metrics"] else {},
        error=row["error_message"] or row["job_error"],
    )


class SpiceRunsView:
    surface = "spice"
    job_kind = JOB_KIND

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]:
        page = keyset(query, "r.created_at", "r.id")
        rows = runs_page(conn, _SELECT, query, "COALESCE(j.status, 'failed')", page)
        return [_row(r) for r in rows]

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None:
        found = run_row(conn, _SELECT, "r.id", run_id, extra="r.spec, r.scorers, r.signature")
        if found is None:
            return None
        row = _row(found)
        return RunDetail(
            row=row,
            metrics=row.metrics,
            signature=found["signature"],
            configuration=jsonio.decode(found["spec"]),
            scorers=jsonio.decode(found["scorers"]),
            pass_threshold=PASS,
        )

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        scorers = self._scorers(conn, run_id)
        if not scorers:
            return CasesPage([], 0, "")
        scorer = query.scorer if query.scorer in scorers else scorers[0]
        filters, fargs = score_filter(query, "value", PASS)
        # Every scorer's row of a case holds the same texts: search the filtered scorer's.
        search, sargs = text_filter(query, ["input", "expected", "actual"])
        base = where("run_id = ?", "scorer = ?", filters, search)
        args: list[Any] = [run_id, scorer, *fargs, *sargs]
        total = conn.execute(f"SELECT COUNT(*) FROM spice_results{base}", args).fetchone()[0]
        direction = "DESC" if query.order == "desc" else "ASC"
        order = f"idx {direction}" if query.sort == "idx" else f"value {direction}, idx"
        page = [
            int(r[0])
            for r in conn.execute(
                f"SELECT idx FROM spice_results{base} ORDER BY {order} LIMIT ? OFFSET ?",
                [*args, query.limit, query.offset],
            )
        ]
        if not page:
            return CasesPage([], int(total), scorer)
        marks = ",".join("?" * len(page))
        names = ",".join("?" * len(scorers))
        cells: dict[int, dict[str, Any]] = {}
        # Both IN lists, so each row is one primary-key lookup (run_id, scorer, idx):
        # without the scorers SQLite walks all of the run's rows (40 ms at 100,000 cases).
        for r in conn.execute(
            "SELECT idx, scorer, input, actual, expected, value FROM spice_results"
            f" WHERE run_id = ? AND scorer IN ({names}) AND idx IN ({marks})",
            [run_id, *scorers, *page],
        ):
            case = cells.setdefault(
                r["idx"], {"input": r["input"], "output": r["actual"], "ideal": r["expected"]}
            )
            case.setdefault("scores", {})[r["scorer"]] = r["value"]
        rows = []
        for idx in page:
            case = cells[idx]
            scores = {s: case.get("scores", {}).get(s) for s in scorers}
            rows.append(
                CaseRow(
                    idx=idx,
                    input=case["input"] or "",
                    ideal=case["ideal"],
                    output=case["output"],
                    scores=scores,
                    failed=any(v is not None and v < PASS for v in scores.values()),
                )
            )
        return CasesPage(rows, int(total), scorer)

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]:
        return [
            Histogram(
                scorer,
                tenths(
                    conn,
                    "SELECT value FROM spice_results WHERE run_id = ? AND scorer = ?",
                    [run_id, scorer],
                ),
            )
            for scorer in self._scorers(conn, run_id)
        ]

    @staticmethod
    def _scorers(conn: sqlite3.Connection, run_id: str) -> list[str]:
        found = conn.execute("SELECT scorers FROM spice_runs WHERE id = ?", (run_id,)).fetchone()
        return list(jsonio.decode(found[0])) if found else []
