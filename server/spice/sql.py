"""``POST /v1/sql``: read-only queries over ``eval.runs`` and ``eval.results``, answered by
Apache DataFusion (the ``datafusion`` Python package: the engine and SQL dialect the
runtime answers with).

Each query gets its own DataFusion session holding nothing but the caller's rows: the
tenant's runs (their status from ``job_view``) and, when the query text names
``results``, the tenant's results, read from the database file on a read-only SQLite
connection into Arrow tables in the runtime's types (``Timestamp(s)``, ``List<Utf8>``,
``Map<Utf8, Float32>``, ``Float32``). They are registered as ``spice.eval.runs`` and
``spice.eval.results`` (the default catalog is ``spice``, so ``eval.runs`` names them
too), and, as the SQLite version exposed them, as ``eval_runs`` / ``eval_results``. No
other table, no file: the session's SQL options refuse DDL (``CREATE EXTERNAL TABLE``,
``CREATE VIEW``), DML (``INSERT``, ``COPY ... TO``) and other statements (``SET``,
``PREPARE``); URL tables (``SELECT * FROM '/etc/passwd'``) are off, the disk manager
(spill files) is off, and the package has no file-reading table function. The runtime's
JSON functions are registered as UDFs (:mod:`.sqljson`).

Bounds: a memory pool of half ``[spice] sql_memory_mb`` (the other half holds the
tables, the answer and the interpreter; DataFusion answers "Resources exhausted" past
it), a timer that interrupts the query at ``[spice] sql_timeout`` seconds, and more than
``[spice] sql_max_rows`` rows or ``[spice] sql_max_bytes`` of values is refused as the
batches arrive. ``eval.runs`` has one column the runtime's lacks, last: ``signature``,
what produced a completed run's scores.

Runs in a worker process of the request lane (``jobs.run_sql``): the bounds above are
the first line of defence, the task's wall-time (``sql_timeout`` plus a little) and
memory (``[spice] sql_memory_mb``) limits the backstop for what they miss (one function
call building a 1 GB value, which no pool accounts for).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import sqljson

# The longest query text (the spec's maxLength).
MAX_SQL_CHARS = 100_000
_TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The engine's own parallelism per query: the tables are one tenant's rows, and a
# request-lane worker shares its machine with the job workers.
_PARTITIONS = 2
ONLY_SELECT = (
    "only SELECT queries reading eval.runs and eval.results (or spice.eval.runs,"
    " spice.eval.results) run here"
)

RUNS_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("created_at", pa.timestamp("s")),
        ("completed_at", pa.timestamp("s")),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("scorers", pa.list_(pa.string())),
        ("metrics", pa.map_(pa.string(), pa.float32())),
        ("signature", pa.string()),
    ]
)
# The layout of every runtime release after spiceai/spiceai PR #4835: the model's answer
# in ``actual``, the ideal in ``expected``.
RESULTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("s")),
        ("input", pa.string()),
        ("actual", pa.string()),
        ("expected", pa.string()),
        ("scorer", pa.string()),
        ("value", pa.float32()),
    ]
)

_RUNS_SQL = (
    "SELECT r.id, replace(r.created_at, 'Z', ''),"
    " replace(COALESCE(r.completed_at, j.finished_at), 'Z', ''), r.dataset, r.model,"
    " CASE j.status WHEN 'queued' THEN 'Queued' WHEN 'running' THEN 'Running'"
    "  WHEN 'waiting' THEN 'Waiting' WHEN 'completed' THEN 'Completed' ELSE 'Failed' END,"
    " CASE WHEN j.status IN ('failed', 'cancelled') OR j.status IS NULL"
    "  THEN COALESCE(r.error_message, j.error, 'the run was cancelled') END,"
    " r.scorers, COALESCE(r.metrics, '{}'), r.signature"
    " FROM spice_runs r LEFT JOIN job_view j ON j.id = r.id"
    " WHERE r.tenant = ? ORDER BY r.created_at, r.id"
)
_RESULTS_SQL = (
    "SELECT run_id, replace(created_at, 'Z', ''), input, actual, expected, scorer, value"
    " FROM spice_results WHERE tenant = ? ORDER BY run_id, scorer, idx"
)


class QueryRefused(ValueError):
    """The query cannot run here; the message says why (a 400)."""


class _TimedOut(BaseException):
    """The query's timer went off (a BaseException: no ``except Exception`` keeps it)."""


# -- the caller's tables ------------------------------------------------------------------
def _timestamps(values: Sequence[Any]) -> pa.Array:
    return pc.strptime(
        pa.array(values, pa.string()), format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True
    )


def _json_list(text: Any) -> list[str]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _json_map(text: Any) -> list[tuple[str, float]]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return []
    return [(str(k), float(v)) for k, v in value.items()] if isinstance(value, dict) else []


def _columns(rows: list[Any], width: int) -> list[Sequence[Any]]:
    return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]


def load_tables(db_path: Path, tenant: str, results: bool) -> dict[str, pa.Table]:
    """The tenant's ``runs`` (and ``results``, when asked) as Arrow tables."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only=ON")
        runs = conn.execute(_RUNS_SQL, (tenant,)).fetchall()
        found = conn.execute(_RESULTS_SQL, (tenant,)).fetchall() if results else []
    finally:
        conn.close()
    c = _columns(runs, len(RUNS_SCHEMA))
    tables = {
        "runs": pa.Table.from_arrays(
            [
                pa.array(c[0], pa.string()),
                _timestamps(c[1]),
                _timestamps(c[2]),
                *(pa.array(c[i], pa.string()) for i in (3, 4, 5, 6)),
                pa.array([_json_list(v) for v in c[7]], RUNS_SCHEMA.field("scorers").type),
                pa.array([_json_map(v) for v in c[8]], RUNS_SCHEMA.field("metrics").type),
                pa.array(c[9], pa.string()),
            ],
            schema=RUNS_SCHEMA,
        )
    }
    if results:
        r = _columns(found, len(RESULTS_SCHEMA))
        tables["results"] = pa.Table.from_arrays(
            [
                pa.array(r[0], pa.string()),
                _timestamps(r[1]),
                *(pa.array(r[i], pa.string()) for i in (2, 3, 4, 5)),
                pa.array(r[6], pa.float32()),
            ],
            schema=RESULTS_SCHEMA,
        )
    return tables


# -- the session --------------------------------------------------------------------------
def session(tables: dict[str, pa.Table], memory_mb: int, calls: set[tuple[str, int]]) -> Any:
    """A DataFusion session with ``tables`` under ``spice.eval`` and nothing else."""
    from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext
    from datafusion.catalog import Schema

    pool = max(16, memory_mb // 2) * 1024 * 1024
    runtime = RuntimeEnvBuilder().with_fair_spill_pool(pool).with_disk_manager_disabled()
    config = (
        SessionConfig()
        .with_default_catalog_and_schema("spice", "public")
        .with_create_default_catalog_and_schema(True)
        .with_information_schema(True)
        .with_target_partitions(_PARTITIONS)
    )
    ctx = SessionContext(config, runtime)
    catalog = ctx.catalog("spice")
    catalog.register_schema("eval", Schema.memory_schema())
    evals = catalog.schema("eval")
    public = catalog.schema("public")
    # In-memory tables are made in a session of their own (registering them in this one
    # would leave a generated name in its information_schema), then shared: one copy.
    maker = SessionContext()
    for name, table in tables.items():
        batches = table.to_batches(max_chunksize=8192)
        empty = [pa.RecordBatch.from_pylist([], schema=table.schema)]
        maker.register_record_batches(name, [batches or empty])
        provider = maker.catalog().schema().table(name)
        evals.register_table(name, provider)
        public.register_table(f"eval_{name}", provider)
    for fn in sqljson.udfs(calls):
        ctx.register_udf(fn)
    return ctx


def _options() -> Any:
    from datafusion import SQLOptions

    return SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


# -- running one query --------------------------------------------------------------------
def run_query(
    db_path: Path,
    tenant: str,
    sql: str,
    *,
    timeout: float,
    max_rows: int,
    max_bytes: int,
    memory_mb: int = 2048,
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a read-only query; :class:`QueryRefused` for anything else."""
    if not sql.strip():
        raise QueryRefused("the body must be an SQL query, e.g. SELECT * FROM eval.runs")
    if not _TENANT.match(tenant):
        raise QueryRefused("no tenant")
    renamed, calls = sqljson.rename_calls(sql)
    # eval.results is read only when the text may name it (the catalogue listings
    # included): a query over runs alone does not pay for a tenant's 100,000 results.
    lowered = sql.lower()
    wanted = any(word in lowered for word in ("results", "information_schema", "show", "desc"))
    tables = load_tables(db_path, tenant, results=wanted)
    ctx = session(tables, memory_mb, calls)
    try:
        with _timer(timeout) as expired:
            try:
                frame = ctx.sql_with_options(renamed, _options())
                # A column named after its expression shows the public function names.
                names = [sqljson.public_names(n) for n in frame.schema().names]
                batches = _collect(frame, max_rows, max_bytes)
                rows = _rows(names, batches)
            except (QueryRefused, _TimedOut):
                raise
            except (MemoryError, RecursionError, OverflowError) as exc:
                raise QueryRefused(f"the query cannot be evaluated: {type(exc).__name__}") from None
            except Exception as exc:
                if expired():
                    raise _TimedOut from None
                raise QueryRefused(_why(str(exc), memory_mb)) from None
    except _TimedOut:
        why = f"the query ran past {timeout:g} s (setting [spice] sql_timeout)"
        raise QueryRefused(why) from None
    return names, rows


class _Expiry:
    def __init__(self) -> None:
        self.at = 0.0
        self.fired = False

    def __call__(self) -> bool:
        return self.fired or time.monotonic() > self.at


class _timer:
    """Interrupts the query ``seconds`` from now: SIGALRM raises :class:`_TimedOut` in
    the main thread (DataFusion's Python package checks for signals while it waits for
    its engine, so this reaches a long join or a recursive CTE); off the main thread (the
    in-process tests) the deadline is checked between batches."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expiry = _Expiry()
        self._previous: Any = None
        self._armed = False

    def __enter__(self) -> _Expiry:
        self.expiry.at = time.monotonic() + self.seconds
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, max(0.001, self.seconds))
            self._armed = True
        return self.expiry

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        self.expiry.fired = True
        raise _TimedOut

    def __exit__(self, *exc: object) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)


def _collect(frame: Any, max_rows: int, max_bytes: int) -> list[pa.RecordBatch]:
    """The answer's batches, refusing past ``max_rows`` rows or ``max_bytes`` of text,
    bytes and nested values before either is all in memory."""
    batches: list[pa.RecordBatch] = []
    rows = size = 0
    for chunk in frame.execute_stream():
        batch: pa.RecordBatch = chunk.to_pyarrow()
        rows += batch.num_rows
        if rows > max_rows:
            raise QueryRefused(
                f"the query returns more than {max_rows} rows (setting [spice] sql_max_rows);"
                " add a LIMIT"
            )
        size += sum(_value_bytes(column) for column in batch.columns)
        if size > max_bytes:
            raise QueryRefused(
                f"the query returns more than {max_bytes} bytes (setting [spice] sql_max_bytes);"
                " select fewer columns or add a LIMIT"
            )
        batches.append(batch)
    return batches


def _value_bytes(column: pa.Array) -> int:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        total = pc.sum(pc.binary_length(column)).as_py()
        return int(total or 0)
    if pa.types.is_nested(kind) or pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        return int(column.nbytes)
    return 0  # numbers, dates: bounded by the row cap, as before


# DataFusion's words for a statement that is no query: refused by the SQL options (DDL,
# DML, SET), unknown to its planner (ATTACH, PRAGMA, BEGIN), or no statement at all.
_NOT_A_QUERY = re.compile(
    r"(DDL|DML|Statement) not supported|Unsupported SQL statement|Query .* not implemented"
    r"|No SQL statements were provided"
)


def _why(message: str, memory_mb: int) -> str:
    message = sqljson.public_names(message.strip())
    if _NOT_A_QUERY.search(message):
        return f"{message}: {ONLY_SELECT}"
    if "only supports a single SQL statement" in message:
        return f"{message}: send one statement"
    if "Resources exhausted" in message:
        return (
            f"{message}: the query needs more memory than half of {memory_mb} MB"
            " (setting [spice] sql_memory_mb)"
        )
    if re.search(r"table '[^']*' not found", message):
        return f"{message}: {ONLY_SELECT}"
    if "Operator -> is not yet supported" in message or "Operator ->> is not" in message:
        return f"{message}: call json_get(x, 'key') or json_as_text(x, 'key') instead"
    return message


# -- rendering ----------------------------------------------------------------------------
def _rows(names: list[str], batches: list[pa.RecordBatch]) -> list[dict[str, Any]]:
    """Rows as the runtime's JSON writer sends them: null fields left out."""
    rows: list[dict[str, Any]] = []
    for batch in batches:
        columns = [_python(column) for column in batch.columns]
        for values in zip(*columns, strict=True):
            rows.append({n: v for n, v in zip(names, values, strict=True) if v is not None})
    return rows


def _python(column: pa.Array) -> list[Any]:
    convert = _converter(column.type)
    values = column.to_pylist()
    return values if convert is None else [None if v is None else convert(v) for v in values]


def _float32(value: float) -> float | None:
    return float(str(np.float32(value))) if np.isfinite(value) else None


def _float(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.isoformat().replace("+00:00", "Z")
    return str(value.isoformat())


def _converter(kind: pa.DataType) -> Callable[[Any], Any] | None:
    """How one value of Arrow type ``kind`` is shown in JSON (None: as Python has it)."""
    if pa.types.is_float32(kind) or pa.types.is_float16(kind):
        return _float32  # the runtime's JSON shows a Float32 by its shortest text
    if pa.types.is_float64(kind):
        return _float
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind):
        return _when
    if pa.types.is_decimal(kind):
        return lambda v: float(v) if isinstance(v, Decimal) else v
    if pa.types.is_duration(kind) or pa.types.is_interval(kind):
        return str
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return lambda v: v.hex()
    if pa.types.is_map(kind):
        keys, items = _converter(kind.key_type), _converter(kind.item_type)
        return lambda pairs: {
            str(keys(k) if keys else k): (items(v) if items and v is not None else v)
            for k, v in pairs
        }
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        inner = _converter(kind.value_type)
        if inner is None:
            return None
        return lambda items: [None if v is None else inner(v) for v in items]
    if pa.types.is_struct(kind):
        fields = {f.name: _converter(f.type) for f in kind}

        def struct(row: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for k, v in row.items():
                convert = fields.get(k)
                out[k] = convert(v) if convert is not None and v is not None else v
            return out

        return struct
    return None
