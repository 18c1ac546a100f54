"""Small SQL helpers the surfaces' read models share (keyset clauses, score bins)."""

from __future__ import annotations

import sqlite3
from typing import Any

from . import jsonio
from .masking import mask_key
from .readmodel import CasesQuery, RunsQuery

# Bins of a score in [0, 1], named by their lower bound: tenths, the last one closed
# (1.0 falls in "0.9"). Scores outside [0, 1] fall in the first or last. A score on an
# edge goes up: 0.3 stored as a float32 (0.30000001) and as a float64 (0.29999999999999
# after x10) both land in "0.3", hence the 1e-9 nudge.
TENTHS = [f"{i / 10:.1f}" for i in range(10)]


def keyset(query: RunsQuery, created: str, ident: str) -> tuple[str, list[Any], str]:
    """``(where, args, order by)`` of one keyset page over ``(created, ident)``."""
    direction = "DESC" if query.order == "desc" else "ASC"
    where, args = "", []
    if query.after is not None:
        op = "<" if query.order == "desc" else ">"
        where = f"({created}, {ident}) {op} (?, ?)"
        args = list(query.after)
    return where, args, f"{created} {direction}, {ident} {direction}"


def runs_page(
    conn: sqlite3.Connection,
    select: str,
    query: RunsQuery,
    status: str,
    page: tuple[str, list[Any], str],
    *fixed: str,
) -> list[sqlite3.Row]:
    """One page of a surface's runs: ``select`` (its SELECT ... FROM ... JOIN), the
    keyset ``page`` (:func:`keyset`), the core state in column ``status``, and any
    ``fixed`` clauses (e.g. not deleted)."""
    where_page, args, order = page
    state, state_args = status_clause(query, status)
    sql = f"{select}{where(*fixed, where_page, state)} ORDER BY {order} LIMIT ?"
    return conn.execute(sql, [*args, *state_args, query.limit]).fetchall()


def run_row(
    conn: sqlite3.Connection,
    select: str,
    ident: str,
    run_id: str,
    *fixed: str,
    extra: str = "",
) -> sqlite3.Row | None:
    """One run of a surface: ``select`` (as for :func:`runs_page`) with the detail
    page's ``extra`` columns first, where column ``ident`` is ``run_id`` and any
    ``fixed`` clauses hold (e.g. not deleted); None when there is no such run."""
    if extra:
        select = select.replace("SELECT ", f"SELECT {extra}, ", 1)
    return conn.execute(f"{select}{where(f'{ident} = ?', *fixed)}", (run_id,)).fetchone()


def status_clause(query: RunsQuery, column: str) -> tuple[str, list[Any]]:
    if query.status is None:
        return "", []
    return f"{column} = ?", [query.status]


def where(*clauses: str) -> str:
    kept = [c for c in clauses if c]
    return " WHERE " + " AND ".join(kept) if kept else ""


def masked_tenant(tenant: str | None) -> str:
    """As the journal masks a key: the first and last two characters of the digest."""
    return mask_key(tenant) if tenant and tenant != "public" else (tenant or "")


def tenths(conn: sqlite3.Connection, sql: str, args: list[Any]) -> list[tuple[str, int]]:
    """Counts per tenth of ``sql``'s single ``value`` column (NULLs left out)."""
    counts = [0] * 10
    for bucket, n in conn.execute(
        "SELECT MIN(MAX(CAST(value * 10 + 1e-9 AS INTEGER), 0), 9), COUNT(*)"
        f" FROM ({sql}) WHERE value IS NOT NULL GROUP BY 1",
        args,
    ):
        counts[int(bucket)] = int(n)
    return list(zip(TENTHS, counts, strict=True))


def score_filter(query: CasesQuery, column: str, threshold: float | None) -> tuple[str, list[Any]]:
    """The WHERE clause of a cases query's score filters on ``column``."""
    clauses, args = [], []
    if query.failed_only and threshold is not None:
        clauses.append(f"{column} < ?")
        args.append(threshold)
    if query.min_score is not None:
        clauses.append(f"{column} >= ?")
        args.append(query.min_score)
    if query.max_score is not None:
        clauses.append(f"{column} <= ?")
        args.append(query.max_score)
    return " AND ".join(clauses), args


# A search term longer than this is not a substring a person typed: 200 characters keep
# each LIKE pattern (one per text column) cheap to compile and to match.
MAX_Q = 200


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` escaped (``ESCAPE '\\'``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def text_filter(query: CasesQuery, columns: list[str]) -> tuple[str, list[Any]]:
    """The WHERE clause of a cases query's ``q``: any of ``columns`` holds it. Bounded:
    the term is cut at MAX_Q characters and the scan stays within one run's rows."""
    if not query.q:
        return "", []
    pattern = like_pattern(query.q[:MAX_Q])
    clause = " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in columns)
    return f"({clause})", [pattern] * len(columns)


def text_of(value: Any) -> str:
    """A cell as the cases table shows it: strings as they are, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return jsonio.encode(value).decode()
