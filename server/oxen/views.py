"""The dashboard's read model of Oxen Hub evaluations (``oxen_evaluations``).

A run is an evaluation: its repository, the file and revision it read (``ns/repo @
branch : path``), the model asked (and the one that ran), the rows processed and the
tokens used. Oxen keeps no per-case score: an evaluation adds one column (a generated
text, or an embedding) to the rows, and a row that cannot be generated fails the whole
evaluation. So the run's page says so (``RunDetail.note``) and keeps no scorer; its cases
are the evaluated rows -- input the prompt rendered from the source row, output the
generated text (or an embedding's size and first values) -- and none fails on its own.

Those rows are not in SQLite: the results column is a parquet blob the job wrote
(``results_blob``, one row group per written part) and the source is the file at the
pinned commit (``oxen_tree_entries``), both under ``<data dir>/oxen/blobs`` beside the
database. A page reads only the row groups that hold it (parquet: ms at any depth); a
CSV/TSV/JSON Lines source streams up to the page (tables.iter_batches, 8,192 rows a
batch). Runs page by keyset on ``(created_at, id)`` (0003_dashboard_indexes.sql).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..readmodel import (
    CaseRow,
    CasesPage,
    CasesQuery,
    Histogram,
    RunDetail,
    RunRow,
    RunsQuery,
)
from ..readsql import keyset, masked_tenant, run_row, runs_page, text_of
from . import tables
from .evaluations import EVALUATION_JOB, EVALUATION_STATUSES, EvalRequest
from .prompts import PromptInvalid, compile_prompt

NOTE = (
    "Oxen evaluations keep no per-case score: each row gets the generated column only, and"
    " a row that cannot be generated fails the whole evaluation. The cases are the"
    " evaluated rows (the prompt rendered from the row, and what came out): download them"
    " as CSV or JSON below the charts."
)
EMBEDDING_SHOWN = 4  # an embedding's first values shown beside its size
BATCH = 8192

_SELECT = (
    "SELECT e.id, e.tenant, e.request, e.source_version, e.source_path, e.source_commit,"
    " e.model_ran, e.error_message, e.prompt_tokens, e.completion_tokens, e.created_at,"
    " o.namespace, o.name AS repo_name,"
    " COALESCE(j.status, 'failed') AS state, COALESCE(j.processed, 0) AS processed,"
    " COALESCE(j.total, 0) AS total, j.started_at, j.finished_at, j.error AS job_error"
    " FROM oxen_evaluations e JOIN oxen_repos o ON o.id = e.repo_id"
    " LEFT JOIN job_view j ON j.id = e.id"
)


def _row(row: sqlite3.Row) -> RunRow:
    state = row["state"]
    req = EvalRequest.from_json(row["request"])
    model = (
        req.model if row["model_ran"] in ("", req.model) else f"{req.model} ({row['model_ran']})"
    )
    metrics = {"rows processed": float(row["processed"])}
    if req.type == "text":
        metrics["tokens used"] = float(row["prompt_tokens"] + row["completion_tokens"])
    return RunRow(
        surface="oxen",
        tenant=masked_tenant(row["tenant"]),
        id=row["id"],
        name=req.name or req.target_column,
        dataset=f"{row['namespace']}/{row['repo_name']} @ {row['source_version']}:"
        f" {row['source_path']}",
        model=model,
        status=state,
        vendor_status=EVALUATION_STATUSES.word(state),
        processed=int(row["processed"]),
        total=int(row["total"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        metrics=metrics,
        error=row["error_message"] or (row["job_error"] if state == "failed" else None),
    )


def blob_root(conn: sqlite3.Connection) -> Path:
    """``<data dir>/oxen/blobs``: the database lies in the data dir (server/app.py)."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).parent / "oxen" / "blobs"
    raise LookupError("the database is in memory: Oxen's blobs cannot be found beside it")


def blob_path(root: Path, key: str) -> Path:
    return root / key[:2] / key[2:]  # BlobStore.path's fan-out


def rows_of(
    table: tables.Table, columns: Sequence[str], start: int, stop: int
) -> list[dict[str, Any]]:
    """Rows ``start`` to ``stop`` of ``columns``: a parquet file reads only the row groups
    holding them; a text format streams up to them."""
    if stop <= start or not columns:
        return [{} for _ in range(max(0, stop - start))]
    if table.format == "parquet":
        return parquet_rows(pq.ParquetFile(table.path), columns, start, stop)
    out: list[dict[str, Any]] = []
    done = 0
    for batch in tables.iter_batches(table, list(columns), BATCH):
        n = len(next(iter(batch.values())))
        if done + n > start:
            lo, hi = max(0, start - done), min(n, stop - done)
            out += [{c: batch[c][i] for c in columns} for i in range(lo, hi)]
        done += n
        if done >= stop:
            break
    return out


def parquet_rows(
    pf: pq.ParquetFile, columns: Sequence[str], start: int, stop: int
) -> list[dict[str, Any]]:
    """Rows ``start`` to ``stop``, decoding only the row groups that hold them."""
    out: list[dict[str, Any]] = []
    first = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if first + n > start and first < stop:
            part = pf.read_row_group(g, columns=list(columns)).to_pylist()
            out += part[max(0, start - first) : stop - first]
        first += n
        if first >= stop:
            break
    return out


def shown(value: Any, kind: str) -> str | None:
    if value is None:
        return None
    if kind == "embeddings" and isinstance(value, list):
        head = ", ".join(f"{float(v):.4f}" for v in value[:EMBEDDING_SHOWN])
        more = ", …" if len(value) > EMBEDDING_SHOWN else ""
        return f"embedding, {len(value)} dimensions: [{head}{more}]"
    return text_of(value)


class OxenRunsView:
    surface = "oxen"
    job_kind = EVALUATION_JOB

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]:
        page = keyset(query, "e.created_at", "e.id")
        rows = runs_page(conn, _SELECT, query, "COALESCE(j.status, 'failed')", page)
        return [_row(r) for r in rows]

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None:
        found = run_row(conn, _SELECT, "e.id", run_id, extra="e.engine_signature, e.api_version")
        if found is None:
            return None
        req = EvalRequest.from_json(found["request"])
        return RunDetail(
            row=_row(found),
            metrics=_row(found).metrics,
            signature=found["engine_signature"] or None,
            configuration={
                "api_version": found["api_version"],
                "repository": f"{found['namespace']}/{found['repo_name']}",
                "resource": {"version": found["source_version"], "path": found["source_path"]},
                "commit_id": found["source_commit"],
                "model_ran": found["model_ran"],
                "prompt_tokens": found["prompt_tokens"],
                "completion_tokens": found["completion_tokens"],
                **{k: v for k, v in req.__dict__.items() if k != "api_version"},
            },
            scorers=[],
            note=NOTE,
        )

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        found = conn.execute(
            "SELECT e.request, e.results_blob, t.blob_key, e.source_path"
            " FROM oxen_evaluations e LEFT JOIN oxen_tree_entries t ON t.repo_id = e.repo_id"
            " AND t.commit_id = e.source_commit AND t.path = e.source_path WHERE e.id = ?",
            (run_id,),
        ).fetchone()
        # No row fails on its own (the module's docstring): "failed only" shows none.
        if found is None or not found["results_blob"] or query.failed_only:
            return CasesPage([], 0, "")
        req = EvalRequest.from_json(found["request"])
        root = blob_root(conn)
        results = pq.ParquetFile(blob_path(root, found["results_blob"]))
        total = int(results.metadata.num_rows)
        if query.order == "desc":
            stop = max(0, total - query.offset)
            start = max(0, stop - query.limit)
        else:
            start = min(total, query.offset)
            stop = min(total, start + query.limit)
        column = results.schema_arrow.names[0]
        outputs = parquet_rows(results, [column], start, stop)
        inputs = self._prompts(root, found["blob_key"], found["source_path"], req, start, stop)
        rows = [
            CaseRow(
                idx=start + i,
                input=inputs[i] if i < len(inputs) else "",
                ideal=None,
                output=shown(out[column], req.type),
                scores={},
                failed=False,
            )
            for i, out in enumerate(outputs)
        ]
        if query.order == "desc":
            rows.reverse()
        return CasesPage(rows, total, "")

    @staticmethod
    def _prompts(
        root: Path, key: str | None, path: str, req: EvalRequest, start: int, stop: int
    ) -> list[str]:
        """The prompts rendered from the source's rows ``start`` to ``stop`` (none when
        the source is gone or no longer fits the prompt)."""
        if key is None:
            return []
        try:
            table = tables.read_table(blob_path(root, key), tables.table_format(path))
            prompt = compile_prompt(req.prompt, table.columns)
            source = rows_of(table, list(prompt.columns), start, stop)
        except (tables.TableError, PromptInvalid, OSError):
            return []
        return [prompt.render(r) for r in source]

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]:
        return []
