"""Content negotiation: JSON, CSV or an aligned plain-text table, by ``Accept``.

Official clients send all sorts of ``Accept`` headers; one naming nothing we serve gets
the first offered type (JSON), never a 406.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from starlette.responses import Response

from .jsonio import JSONResponse, encode

JSON = "application/json"
CSV = "text/csv"
TEXT = "text/plain"
ALL = (JSON, CSV, TEXT)


def _parse_accept(header: str) -> list[tuple[str, float, int]]:
    ranges = []
    for position, part in enumerate(header.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q, position))
    return ranges


def _matches(media_range: str, offered: str) -> bool:
    if media_range in ("*/*", offered):
        return True
    kind, _, sub = media_range.partition("/")
    return sub == "*" and offered.startswith(kind + "/")


def choose(accept: str | None, offered: Sequence[str] = ALL) -> str:
    """The offered type the client prefers: highest q, then its order in ``Accept``.

    Exact types beat wildcards at the same q, so ``text/csv, */*`` picks CSV.
    """
    if not accept:
        return offered[0]
    best: tuple[float, int, int, int] | None = None
    choice = offered[0]
    for media, q, position in _parse_accept(accept):
        if q <= 0:
            continue
        specificity = 0 if media == "*/*" else 1 if media.endswith("/*") else 2
        for rank, candidate in enumerate(offered):
            if _matches(media, candidate):
                key = (q, specificity, -position, -rank)
                if best is None or key > best:
                    best, choice = key, candidate
    return choice


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return encode(value).decode()


def to_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


def to_text_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned table in the style of Arrow's pretty printer (``+---+`` borders)."""
    cells = [[_cell(row.get(c)).replace("\n", " ") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    body = [rule, line(columns), rule, *(line(r) for r in cells)]
    if cells:
        body.append(rule)
    return "\n".join(body) + "\n"


def respond(
    accept: str | None,
    payload: Any,
    *,
    rows: Sequence[Mapping[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
    status: int = 200,
    offered: Sequence[str] = ALL,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Render ``payload`` as JSON, or ``rows`` as CSV / text table when those are preferred."""
    media = choose(accept, offered if rows is not None else (JSON,))
    if media == JSON or rows is None:
        return JSONResponse(payload, status_code=status, headers=headers)
    cols = list(columns) if columns is not None else _columns_of(rows)
    text = to_csv(rows, cols) if media == CSV else to_text_table(rows, cols)
    return Response(text, status_code=status, media_type=f"{media}; charset=utf-8", headers=headers)


def _columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)
