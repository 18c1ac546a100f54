"""The dashboard's read model of OpenAI Evals runs (``openai_runs``) and their output
items (``openai_items``).

A run's metrics are its per-criterion pass rates (``<criterion name> pass rate``, from
``per_testing_criteria_results``); its histograms the pass/fail counts per criterion. A
case is one output item: input the data-source item (its ``input`` when that is a
string, else the item as JSON), ideal the reference of the first criterion that has one
(``string_check``/``text_similarity``, rendered with the item), output the sample's
output text; a score column per criterion. A case fails when any criterion failed
(the item's status ``fail``).

Runs store ``created_at`` as Unix seconds (as OpenAI answers it); the runs table merges
surfaces on ISO-8601 text, so rows answer it as ``%Y-%m-%dT%H:%M:%SZ`` (what every other
surface stores) and a cursor is turned back into seconds, keeping the keyset on the
index ``(created_at, id)`` (0002_dashboard_indexes.sql).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
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
from ..readsql import masked_tenant, run_row, runs_page, text_filter, text_of, where
from .graders import MissingVariable, render
from .store import JOB_KIND, STATUSES

ISO = "%Y-%m-%dT%H:%M:%SZ"
PASS_RATE = " pass rate"

_SELECT = (
    "SELECT r.id, r.tenant, r.eval_id, r.name, r.model, r.data_source, r.rows,"
    " r.created_at, r.counts, r.per_criteria, e.name AS eval_name, e.criteria,"
    " COALESCE(j.status, 'failed') AS state, COALESCE(j.processed, 0) AS processed,"
    " COALESCE(j.total, r.rows) AS total, j.started_at, j.finished_at, j.error"
    " FROM openai_runs r JOIN openai_evals e ON e.id = r.eval_id"
    " LEFT JOIN job_view j ON j.id = r.id"
)


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(ISO)


def _keyset(query: RunsQuery) -> tuple[str, list[Any], str]:
    """The keyset clause over ``(r.created_at, r.id)`` in seconds for a cursor in ISO text.

    A cursor from another surface may fall inside a second (or not parse as this
    format): then the whole second is before or after it, by text order."""
    direction = "DESC" if query.order == "desc" else "ASC"
    order = f"r.created_at {direction}, r.id {direction}"
    if query.after is None:
        return "", [], order
    text, ident = query.after
    op = "<" if query.order == "desc" else ">"
    try:
        seconds = int(
            datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        )
    except ValueError:
        return (
            f"(strftime('{ISO}', r.created_at, 'unixepoch'), r.id) {op} (?, ?)",
            [text, ident],
            order,
        )
    own = iso(seconds)
    if own == text:
        return f"(r.created_at, r.id) {op} (?, ?)", [seconds, ident], order
    # The second's own text sorts before the cursor's (e.g. a fraction after it).
    if own < text:
        return ("r.created_at <= ?" if op == "<" else "r.created_at > ?"), [seconds], order
    return ("r.created_at < ?" if op == "<" else "r.created_at >= ?"), [seconds], order


def _names(criteria: list[dict[str, Any]]) -> dict[str, str]:
    """Criterion id -> the column it shows as: its name (its id when names repeat)."""
    counts: dict[str, int] = {}
    for c in criteria:
        counts[c.get("name", "")] = counts.get(c.get("name", ""), 0) + 1
    return {
        c["id"]: c["name"] if c.get("name") and counts[c["name"]] == 1 else c["id"]
        for c in criteria
    }


def _pass_rates(
    per_criteria: list[dict[str, Any]] | None, names: dict[str, str]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in per_criteria or []:
        seen = int(r["passed"]) + int(r["failed"])
        if seen:
            name = names.get(r["testing_criteria"], r["testing_criteria"])
            out[name + PASS_RATE] = int(r["passed"]) / seen
    return out


def _graders(criteria: list[dict[str, Any]]) -> str:
    """What scored a run whose rows gave their samples (no model ran): its graders."""
    kinds = dict.fromkeys(str(c.get("type", "")) for c in criteria)
    return "graders: " + ", ".join(k for k in kinds if k)


def _dataset(source: dict[str, Any]) -> str:
    """The data source as ``<type>: <source type> <file id>`` (``jsonl: file_id file-...``)."""
    inner = source.get("source") or {}
    parts = [str(inner.get("type", ""))]
    if inner.get("id"):
        parts.append(str(inner["id"]))
    elif inner.get("type") == "file_content":
        parts.append(f"{len(inner.get('content') or [])} rows")
    return f"{source.get('type', '')}: {' '.join(p for p in parts if p)}"


def _row(row: sqlite3.Row) -> RunRow:
    state = row["state"]
    names = _names(jsonio.decode(row["criteria"]))
    per = jsonio.decode(row["per_criteria"]) if row["per_criteria"] else None
    return RunRow(
        surface="openai",
        tenant=masked_tenant(row["tenant"]),
        id=row["id"],
        name=f"{row['eval_name']} / {row['name']}" if row["eval_name"] else row["name"],
        dataset=_dataset(jsonio.decode(row["data_source"])),
        model=row["model"] or _graders(jsonio.decode(row["criteria"])),
        status=state,
        vendor_status=STATUSES.word(state),
        processed=int(row["processed"]),
        total=int(row["total"]),
        created_at=iso(int(row["created_at"])),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=_pass_rates(per, names) if state == "completed" else {},
        error=row["error"],
    )


def output_text(sample: dict[str, Any] | None) -> str | None:
    """The sample's answer: its assistant messages' text (None without a sample)."""
    if not sample:
        return None
    texts = [
        text_of(m.get("content"))
        for m in sample.get("output") or []
        if isinstance(m, dict) and m.get("role", "assistant") == "assistant"
    ]
    return "\n".join(texts) if texts else None


def reference(
    criteria: list[dict[str, Any]], item: dict[str, Any], output: str | None
) -> str | None:
    """The first criterion's reference rendered for this item (None when no criterion
    has one, or its template names what the item lacks)."""
    for c in criteria:
        template = c.get("reference")
        if isinstance(template, str):
            try:
                return render(template, {"item": item, "sample": {"output_text": output or ""}})
            except MissingVariable:
                return None
    return None


class OpenAIRunsView:
    surface = "openai"
    job_kind = JOB_KIND

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]:
        rows = runs_page(conn, _SELECT, query, "COALESCE(j.status, 'failed')", _keyset(query))
        return [_row(r) for r in rows]

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None:
        found = run_row(conn, _SELECT, "r.id", run_id, extra="r.signature, r.usage, r.metadata")
        if found is None:
            return None
        row = _row(found)
        criteria = jsonio.decode(found["criteria"])
        signature = jsonio.decode(found["signature"]) if found["signature"] else None
        names = _names(criteria)
        return RunDetail(
            row=row,
            metrics=row.metrics,
            signature=(
                " ".join(f"{names.get(k, k)}: {v}" for k, v in signature.items())
                if signature
                else None
            ),
            configuration={
                "eval_id": found["eval_id"],
                "eval_name": found["eval_name"],
                "data_source": jsonio.decode(found["data_source"]),
                "testing_criteria": criteria,
                "result_counts": jsonio.decode(found["counts"]) if found["counts"] else None,
                "per_model_usage": jsonio.decode(found["usage"]) if found["usage"] else None,
                "metadata": jsonio.decode(found["metadata"]) if found["metadata"] else None,
            },
            scorers=list(names.values()),
            pass_threshold=None,  # each criterion passes by its own rule
        )

    @staticmethod
    def _criteria(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
        found = conn.execute(
            "SELECT e.criteria FROM openai_runs r JOIN openai_evals e ON e.id = r.eval_id"
            " WHERE r.id = ?",
            (run_id,),
        ).fetchone()
        return list(jsonio.decode(found[0])) if found else []

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        criteria = self._criteria(conn, run_id)
        names = _names(criteria)
        columns = list(names.values())
        if not columns:
            return CasesPage([], 0, "")
        scorer = query.scorer if query.scorer in columns else columns[0]
        # Results are stored in the criteria's order: the scorer's score is at its index.
        # The first three have an index on exactly this expression (0002_dashboard_indexes).
        score = f"json_extract(CAST(results AS TEXT), '$[{columns.index(scorer)}].score')"
        clauses: list[str] = ["run_id = ?"]
        args: list[Any] = [run_id]
        if query.failed_only:
            clauses.append("status = 'fail'")  # index (run_id, status, idx)
        if query.min_score is not None:
            clauses.append(f"{score} >= ?")
            args.append(query.min_score)
        if query.max_score is not None:
            clauses.append(f"{score} <= ?")
            args.append(query.max_score)
        search, sargs = text_filter(query, ["CAST(item AS TEXT)", "CAST(sample AS TEXT)"])
        if search:
            clauses.append(search)
            args += sargs
        base = where(*clauses)
        total = conn.execute(f"SELECT COUNT(*) FROM openai_items{base}", args).fetchone()[0]
        direction = "DESC" if query.order == "desc" else "ASC"
        # Ties follow the same direction: a mixed one sorts past the index (a temp b-tree).
        order = (
            f"idx {direction}" if query.sort == "idx" else f"{score} {direction}, idx {direction}"
        )
        page = [
            int(r[0])
            for r in conn.execute(
                f"SELECT idx FROM openai_items{base} ORDER BY {order} LIMIT ? OFFSET ?",
                [*args, query.limit, query.offset],
            )
        ]
        if not page:
            return CasesPage([], int(total), scorer)
        marks = ",".join("?" * len(page))
        found = {
            int(r["idx"]): r
            for r in conn.execute(
                "SELECT idx, status, item, results, sample FROM openai_items"
                f" WHERE run_id = ? AND idx IN ({marks})",
                [run_id, *page],
            )
        }
        rows = []
        for idx in page:
            r = found[idx]
            item = jsonio.decode(r["item"])
            sample = jsonio.decode(r["sample"]) if r["sample"] else None
            results = jsonio.decode(r["results"])
            output = output_text(sample)
            scores: dict[str, float | None] = {c: None for c in columns}
            errors = []
            for res in results:
                name = names.get(res["name"], res["name"])
                scores[name] = None if res.get("score") is None else float(res["score"])
                if res.get("error"):
                    errors.append(f"{name}: {res['error']}")
            given = item.get("input") if isinstance(item, dict) else None
            rows.append(
                CaseRow(
                    idx=idx,
                    input=given if isinstance(given, str) else text_of(item),
                    ideal=reference(criteria, item, output),
                    output=output,
                    scores=scores,
                    failed=r["status"] == "fail",
                    detail="; ".join(errors),
                )
            )
        return CasesPage(rows, int(total), scorer)

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]:
        """Pass/fail counts per criterion (``per_testing_criteria_results``)."""
        found = conn.execute(
            "SELECT r.per_criteria, e.criteria FROM openai_runs r JOIN openai_evals e"
            " ON e.id = r.eval_id WHERE r.id = ?",
            (run_id,),
        ).fetchone()
        if found is None or not found["per_criteria"]:
            return []
        names = _names(jsonio.decode(found["criteria"]))
        return [
            Histogram(
                names.get(r["testing_criteria"], r["testing_criteria"]),
                [("passed", int(r["passed"])), ("failed", int(r["failed"]))],
            )
            for r in jsonio.decode(found["per_criteria"])
        ]
