"""``POST /v1/sql``: read-only queries over ``eval.runs`` and ``eval.results``.

Each query gets its own SQLite connection to the database file opened read-only
(``mode=ro``). Before the caller's SQL runs, the caller's runs are copied into a temporary
table ``eval_runs`` (their status comes from ``job_view``) and, when the query names
them, the caller's rows of ``spice_results`` into ``eval_results``. The
query's table names are rewritten token by token (``eval.runs`` and ``spice.eval.runs``
→ ``eval_runs``; string literals, quoted identifiers and comments are left alone), then an
authorizer allows only SELECT, reading those two, and functions: a query naming any other
table, a PRAGMA, an ATTACH or a write is refused with the reason. A progress handler stops
a query past ``[spice] sql_timeout`` seconds, and more than ``[spice] sql_max_rows`` rows
is refused (add a LIMIT), as are more than ``[spice] sql_max_bytes`` of values and
one value over 64 MiB. ``eval.runs`` has one column the runtime's lacks, last:
``signature``, what produced a completed run's scores.

Runs in a worker process of the request lane (``jobs.run_sql``): the progress handler and
the bounds above are the first line of defence, the task's wall-time (``sql_timeout`` plus
a little) and memory (``[spice] sql_memory_mb``) limits the backstop for what they miss
(one SQL function call that runs for minutes, SQLite's own memory).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

RUNS, RESULTS = "eval_runs", "eval_results"
# Progress handler period, in SQLite VM instructions: ~1 ms of work on a current core.
_PROGRESS_STEPS = 10_000
# The longest query text (the spec's maxLength), and of one value a query may build: a
# stored cell is at most 16 MiB of text (CSV_FIELD_LIMIT), 4 bytes a character in UTF-8.
MAX_SQL_CHARS = 100_000
MAX_VALUE_BYTES = 64 * 1024 * 1024
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>'(?:[^']|'')*'?)
    | (?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<dot>\.)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class QueryRefused(ValueError):
    """The query cannot run here; the message says why (a 400)."""


def _name(kind: str, text: str) -> str | None:
    if kind == "word":
        return text.lower()
    if kind == "quoted":
        inner = text[1:-1] if len(text) >= 2 else ""
        return inner.replace('""', '"').replace("``", "`").lower()
    return None


def rewrite(sql: str) -> str:
    """``[spice.]eval.runs`` / ``[spice.]eval.results`` → ``eval_runs`` / ``eval_results``."""
    tokens = [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(sql)]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        replaced = _match_name(tokens, i)
        if replaced is not None:
            target, i = replaced
            out.append(target)
            continue
        out.append(tokens[i][1])
        i += 1
    return "".join(out)


def _match_name(tokens: list[tuple[str, str]], i: int) -> tuple[str, int] | None:
    """A qualified table name starting at token ``i``: (replacement, index after it)."""
    parts: list[str] = []
    j = i
    while j < len(tokens):
        name = _name(*tokens[j])
        if name is None:
            break
        parts.append(name)
        k = j + 1
        while k < len(tokens) and tokens[k][0] in ("space", "comment"):
            k += 1
        if k < len(tokens) and tokens[k][0] == "dot" and len(parts) < 3:
            k += 1
            while k < len(tokens) and tokens[k][0] in ("space", "comment"):
                k += 1
            j = k
            continue
        j += 1
        break
    if i > 0 and tokens[i - 1][0] == "dot":
        return None
    if parts[:1] == ["spice"]:
        parts = parts[1:]
    if len(parts) == 2 and parts[0] == "eval" and parts[1] in ("runs", "results"):
        return (RUNS if parts[1] == "runs" else RESULTS), j
    return None


# Opcodes that open a b-tree of a database file; their p3 is the database (1: temp).
_OPENS = frozenset({"OpenRead", "OpenWrite", "ReopenIdx"})


def _reads_temp_only(conn: sqlite3.Connection, sql: str) -> None:
    """Refuse a query whose program opens a table or index outside ``temp``: the
    authorizer sees column reads, but ``SELECT count(*) FROM jobs`` reads no column."""
    if all(m.lastgroup in ("space", "comment") for m in _TOKEN.finditer(sql)):
        raise QueryRefused("only SELECT queries over eval.runs and eval.results run here")
    for _, opcode, _, _, p3, *_ in conn.execute("EXPLAIN " + sql):
        if opcode in _OPENS and p3 != 1:
            raise sqlite3.DatabaseError("not authorized: a table outside eval.runs/results")


def _authorizer(
    action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ:
        if db == "temp" and arg1 in (RUNS, RESULTS):
            return sqlite3.SQLITE_OK
        if db is None:  # a common table expression's own rows, not a stored table
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _value(column: str, value: Any) -> Any:
    if column in ("scorers", "metrics") and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if column == "value" and isinstance(value, float):
        return float(str(np.float32(value)))  # the runtime stores Float32
    return value


def run_query(
    db_path: Path, tenant: str, sql: str, *, timeout: float, max_rows: int, max_bytes: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a read-only query; :class:`QueryRefused` for anything else."""
    if not sql.strip():
        raise QueryRefused("the body must be an SQL query, e.g. SELECT * FROM eval.runs")
    if not _TENANT.match(tenant):
        raise QueryRefused("no tenant")
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    try:
        conn.execute(
            f"CREATE TEMP TABLE {RUNS} AS SELECT r.id AS id,"
            " replace(r.created_at, 'Z', '') AS created_at,"
            " replace(COALESCE(r.completed_at, j.finished_at), 'Z', '') AS completed_at,"
            " r.dataset AS dataset, r.model AS model,"
            " CASE j.status WHEN 'queued' THEN 'Queued' WHEN 'running' THEN 'Running'"
            "  WHEN 'waiting' THEN 'Waiting' WHEN 'completed' THEN 'Completed'"
            "  ELSE 'Failed' END AS status,"
            " CASE WHEN j.status IN ('failed', 'cancelled') OR j.status IS NULL"
            "  THEN COALESCE(r.error_message, j.error, 'the run was cancelled') END"
            "  AS error_message,"
            " r.scorers AS scorers, COALESCE(r.metrics, '{}') AS metrics,"
            " r.signature AS signature"
            " FROM main.spice_runs r LEFT JOIN main.job_view j ON j.id = r.id"
            " WHERE r.tenant = ? ORDER BY r.created_at, r.id",
            (tenant,),
        )
        # The caller's results are copied too (only when the query names them): a table
        # the query may read is then never in main, where a count(*) (which reads no
        # column, so the authorizer never sees it) could count other tenants' rows.
        rewritten = rewrite(sql)
        wanted = RESULTS in rewritten.lower()
        conn.execute(
            f"CREATE TEMP TABLE {RESULTS} AS SELECT run_id, replace(created_at, 'Z', '')"
            " AS created_at, input, output, actual, scorer, value FROM main.spice_results"
            " WHERE tenant = ? AND ? ORDER BY run_id, scorer, idx",
            (tenant, int(wanted)),
        )
        # One value may not outgrow the answer's budget (nor SQLite's own 1 GB default).
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(1024, min(max_bytes, MAX_VALUE_BYTES)))
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS)  # UTF-8: 4 B/char
        deadline = time.monotonic() + timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        conn.set_authorizer(_authorizer)
        try:
            _reads_temp_only(conn, rewritten)
            cur = conn.execute(rewritten)
            if cur.description is None:
                raise QueryRefused("only SELECT queries over eval.runs and eval.results run here")
            columns = [d[0] for d in cur.description]
            fetched = _fetch(cur, max_rows, max_bytes)
        except sqlite3.DatabaseError as exc:
            raise QueryRefused(_why(exc, timeout)) from None
        except (sqlite3.Warning, sqlite3.ProgrammingError) as exc:
            raise QueryRefused(f"{exc}; send one SELECT statement") from None
        except (OverflowError, MemoryError, RecursionError) as exc:
            raise QueryRefused(f"the query cannot be evaluated: {type(exc).__name__}") from None
    finally:
        conn.close()
    rows = [
        {c: _value(c, v) for c, v in zip(columns, row, strict=True) if v is not None}
        for row in fetched
    ]
    return columns, rows


def _fetch(cur: sqlite3.Cursor, max_rows: int, max_bytes: int) -> list[Any]:
    """Rows in chunks of 1,000, refusing past ``max_rows`` rows or ``max_bytes`` of text
    and blobs before either is all in memory."""
    fetched: list[Any] = []
    size = 0
    while chunk := cur.fetchmany(1000):
        fetched += chunk
        if len(fetched) > max_rows:
            raise QueryRefused(
                f"the query returns more than {max_rows} rows (setting [spice] sql_max_rows);"
                " add a LIMIT"
            )
        size += sum(len(v) for row in chunk for v in row if isinstance(v, str | bytes))
        if size > max_bytes:
            raise QueryRefused(
                f"the query returns more than {max_bytes} bytes (setting [spice] sql_max_bytes);"
                " select fewer columns or add a LIMIT"
            )
    return fetched


def _why(exc: sqlite3.DatabaseError, timeout: float) -> str:
    text = str(exc)
    if "interrupted" in text:
        return f"the query ran past {timeout:g} s (setting [spice] sql_timeout)"
    if "too big" in text:
        return (
            f"SQL error: {text}: a value a query builds is limited to"
            f" {MAX_VALUE_BYTES // (1024 * 1024)} MiB (and [spice] sql_max_bytes)"
        )
    if "not authorized" in text or "prohibited" in text:
        return (
            "only SELECT queries reading eval.runs and eval.results (or spice.eval.runs,"
            " spice.eval.results) run here"
        )
    return f"SQL error: {text}"
