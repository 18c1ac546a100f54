"""Compare runs case by case: the same dataset scored twice (or more), lined up by index.

Bounded memory at any size: each run's cases are read in index order, a chunk at a time
(500, doubling to 16,000), through its read model (``RunsView.cases``, sorted by
``idx``), and merged as a stream; only the page of changed cases asked for is kept. The
order shown is regressions first, then improvements, then other changes (a score
appearing or vanishing), each by index, so a page is found in at most two passes: one
counts each kind (and the cases that do not line up), the second, needed only when the
page reaches past the regressions, stops as soon as the page is full. Given the counts of
an earlier look at the same finished runs, one pass that stops at the page's last case.
Two 10,000-case Spice runs: ~0.4 s a pass on an idle core; 100,000: seconds
(scripts/bench_dashboard.py), nearly all of it the views building rows.

Cases line up when both runs have the index and the same input text; a case whose input
differs is counted, never compared (two datasets that happen to share a size are not
the same dataset), and the page says how many and the first one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..readmodel import CaseRow, CasesQuery, RunDetail, RunsView

# Cases read per call to a view: the first call small (a first page shows after a few
# hundred cases), then doubling to MAX_CHUNK. Each call has a fixed cost that grows with
# the run (a COUNT of the run's cases, an OFFSET walked: ~1 ms per 1,000 cases on Spice),
# so a 100,000-case run read 1,000 at a time paid it 100 times (~2 s of 5); doubling pays
# it 10 times. At most MAX_CHUNK cases of each run are in memory at once, and an IN list
# of 16,000 keys stays under SQLite's 32,766 variables.
CHUNK = 500
MAX_CHUNK = 16_000
# More runs than this on one page is a table no one reads; the URL says which six.
MAX_RUNS = 6
# Every this many cases lined up, the first pass notes where each run's stream stood
# (a Mark): a later page resumes from the last mark before it instead of from case 0.
# 100,000 cases: 50 marks of a few dozen bytes.
MARK_EVERY = 2000
# Two floats this close are the same score (a float32 stored, a float64 recomputed).
EPSILON = 1e-9

Kind = Literal["regression", "improvement", "changed"]
KINDS: tuple[Kind, ...] = ("regression", "improvement", "changed")


@dataclass(frozen=True)
class Side:
    """One run of a comparison and the scorer compared on it."""

    surface: str
    run_id: str
    view: RunsView
    detail: RunDetail
    scorer: str  # "" when the run keeps no per-case scores


@dataclass(frozen=True)
class CaseDelta:
    idx: int
    kind: Kind
    input: str
    ideal: str | None
    outputs: list[str | None]  # per run, in the comparison's order
    scores: list[float | None]
    deltas: list[float | None]  # against the first run (None for the first itself)


@dataclass(frozen=True)
class Mark:
    """Where a pass stood: rows of each run read before it, changed cases of each kind."""

    offsets: tuple[int, ...]
    met: dict[str, int]


@dataclass
class Tally:
    compared: int = 0  # cases present in every run with the same input
    regression: int = 0
    improvement: int = 0
    changed: int = 0
    missing: int = 0  # in some runs only
    mismatched: int = 0  # same index, different input
    first_mismatch: tuple[int, str, str] | None = None  # (idx, baseline input, other input)
    marks: list[Mark] = field(default_factory=list)

    @property
    def differing(self) -> int:
        return self.regression + self.improvement + self.changed

    def count(self, kind: Kind) -> int:
        return int(getattr(self, kind))


@dataclass
class CasesCompared:
    tally: Tally
    rows: list[CaseDelta] = field(default_factory=list)


def stream(
    conn: sqlite3.Connection,
    side: Side,
    chunk: int = CHUNK,
    most: int = MAX_CHUNK,
    offset: int = 0,
) -> Iterator[CaseRow]:
    """Every case of one run in index order from the ``offset``-th, read ``chunk`` at a
    time, the chunk doubling up to ``most``."""
    while True:
        page = side.view.cases(
            conn, side.run_id, CasesQuery(scorer=side.scorer, offset=offset, limit=chunk)
        )
        yield from page.rows
        if len(page.rows) < chunk:
            return
        offset += chunk
        chunk = min(most, chunk * 2)


def aligned(
    conn: sqlite3.Connection,
    sides: Sequence[Side],
    chunk: int = CHUNK,
    start: tuple[int, ...] | None = None,
) -> Iterator[tuple[int, list[CaseRow | None], tuple[int, ...]]]:
    """``(idx, one row per run or None where that run lacks it, rows of each run read
    before this idx)`` in index order, each run from its ``start`` offset."""
    taken = list(start or [0] * len(sides))
    streams = [stream(conn, s, chunk, offset=o) for s, o in zip(sides, taken, strict=True)]
    heads: list[CaseRow | None] = [next(it, None) for it in streams]
    while any(h is not None for h in heads):
        idx = min(h.idx for h in heads if h is not None)
        before = tuple(taken)
        row: list[CaseRow | None] = []
        for i, head in enumerate(heads):
            if head is not None and head.idx == idx:
                row.append(head)
                heads[i] = next(streams[i], None)
                taken[i] += 1
            else:
                row.append(None)
        yield idx, row, before


def classify(
    sides: Sequence[Side], cases: Sequence[CaseRow]
) -> tuple[Kind | None, list[float | None]]:
    """What happened to one case from the first run to the others: a regression when any
    run scores it lower, an improvement when none lower and one higher, ``changed`` when a
    score appeared or vanished, None when every score is the same."""
    scores = [c.scores.get(s.scorer) for s, c in zip(sides, cases, strict=True)]
    base = scores[0]
    lower = higher = other = False
    for score in scores[1:]:
        if base is None or score is None:
            other = other or (base is None) != (score is None)
        elif score < base - EPSILON:
            lower = True
        elif score > base + EPSILON:
            higher = True
    if lower:
        return "regression", scores
    if higher:
        return "improvement", scores
    return ("changed" if other else None), scores


def _delta(
    sides: Sequence[Side],
    idx: int,
    kind: Kind,
    cases: Sequence[CaseRow],
    scores: list[float | None],
) -> CaseDelta:
    base = scores[0]
    deltas: list[float | None] = [None]
    for score in scores[1:]:
        deltas.append(None if base is None or score is None else score - base)
    return CaseDelta(
        idx=idx,
        kind=kind,
        input=cases[0].input,
        ideal=cases[0].ideal,
        outputs=[c.output for c in cases],
        scores=scores,
        deltas=deltas,
    )


def _walk(
    conn: sqlite3.Connection,
    sides: Sequence[Side],
    tally: Tally | None,
    chunk: int,
    start: tuple[int, ...] | None = None,
) -> Iterator[tuple[int, Kind, list[CaseRow], list[float | None]]]:
    """The changed cases in index order from ``start``; counts into ``tally`` (and marks
    where it stands every MARK_EVERY cases) when given."""
    for n, (idx, row, before) in enumerate(aligned(conn, sides, chunk, start)):
        if tally is not None and n and n % MARK_EVERY == 0:
            tally.marks.append(Mark(before, {k: tally.count(k) for k in KINDS}))
        if any(c is None for c in row):
            if tally is not None:
                tally.missing += 1
            continue
        cases = [c for c in row if c is not None]
        base = cases[0].input
        other = next((c.input for c in cases[1:] if c.input != base), None)
        if other is not None:
            if tally is not None:
                tally.mismatched += 1
                if tally.first_mismatch is None:
                    tally.first_mismatch = (idx, base, other)
            continue
        if tally is not None:
            tally.compared += 1
        kind, scores = classify(sides, cases)
        if kind is None:
            continue
        if tally is not None:
            setattr(tally, kind, tally.count(kind) + 1)
        yield idx, kind, cases, scores


def _window(
    conn: sqlite3.Connection,
    sides: Sequence[Side],
    tally: Tally,
    kinds: tuple[Kind, ...],
    offset: int,
    limit: int,
    chunk: int,
) -> list[CaseDelta]:
    """The cases of ``kinds`` at positions ``offset`` to ``offset + limit`` of the order
    shown, positions known from ``tally``; stops reading once the window is full."""
    start = {
        "regression": 0,
        "improvement": tally.regression,
        "changed": tally.regression + tally.improvement,
    }
    spans = {k: (start[k], start[k] + tally.count(k)) for k in kinds}
    inside = {k: max(0, min(b, offset + limit) - max(a, offset)) for k, (a, b) in spans.items()}
    wanted = sum(inside.values())
    rows: list[CaseDelta] = []
    if wanted <= 0:
        return rows
    # Resume from the last mark before the first case wanted of every kind on the page.
    first = {k: max(0, offset - start[k]) for k in kinds if inside[k]}
    mark = None
    for m in tally.marks:
        if any(m.met[k] > at for k, at in first.items()):
            break
        mark = m
    met = dict(mark.met) if mark else dict.fromkeys(KINDS, 0)
    for idx, kind, cases, scores in _walk(conn, sides, None, chunk, mark.offsets if mark else None):
        position = start[kind] + met[kind]
        met[kind] += 1
        if kind in kinds and offset <= position < offset + limit:
            rows.append(_delta(sides, idx, kind, cases, scores))
            if len(rows) == wanted:
                break
    rows.sort(key=lambda d: (KINDS.index(d.kind), d.idx))
    return rows


def compare_cases(
    conn: sqlite3.Connection,
    sides: Sequence[Side],
    offset: int,
    limit: int,
    chunk: int = CHUNK,
    known: Tally | None = None,
) -> CasesCompared:
    """The changed cases ``offset`` to ``offset + limit`` in the order shown (regressions,
    improvements, other changes; each by index), and the counts of each kind.

    ``known``: the counts of an earlier call on the same (finished) runs: then one pass
    that stops at the page's last case (a first page reads no further than it shows)."""
    if any(not s.scorer for s in sides):
        return CasesCompared(Tally())
    if known is not None:
        return CasesCompared(known, _window(conn, sides, known, KINDS, offset, limit, chunk))
    tally = Tally()
    rows: list[CaseDelta] = []
    # Pass 1: count everything; a regression's position is known as it is met.
    seen = 0
    for idx, kind, cases, scores in _walk(conn, sides, tally, chunk):
        if kind == "regression":
            if offset <= seen < offset + limit:
                rows.append(_delta(sides, idx, kind, cases, scores))
            seen += 1
    # Pass 2, only when the page reaches past the regressions: positions are now known.
    later: tuple[Kind, ...] = ("improvement", "changed")
    return CasesCompared(tally, rows + _window(conn, sides, tally, later, offset, limit, chunk))


def pick_scorers(details: Sequence[RunDetail], wanted: str = "") -> tuple[list[str], str]:
    """The scorer compared on each run, and a note when it is not one common name.

    A scorer every run has is compared by name (``wanted`` when it is one of those);
    with none in common, each run's first scorer is (say Spice's ``match`` against an
    OpenAI grader's pass rate): the page says so."""
    if any(not d.scorers for d in details):
        lacking = [d.row.id for d in details if not d.scorers]
        return [""] * len(details), (
            f"No per-case scores on {', '.join(lacking)}: only the metrics are compared."
        )
    common = [s for s in details[0].scorers if all(s in d.scorers for d in details[1:])]
    if common:
        scorer = wanted if wanted in common else common[0]
        return [scorer] * len(details), ""
    firsts = [d.scorers[0] for d in details]
    return firsts, (
        "No scorer is common to these runs: each run's first scorer is compared ("
        + ", ".join(f"{d.row.id}: {s}" for d, s in zip(details, firsts, strict=True))
        + ")."
    )


def metric_rows(
    details: Sequence[RunDetail],
) -> list[tuple[str, list[float | None], list[float | None]]]:
    """``(metric, value per run, delta against the first run)``, metrics in the order
    they first appear."""
    names: list[str] = []
    for d in details:
        names.extend(n for n in d.metrics if n not in names)
    out = []
    for name in names:
        values = [d.metrics.get(name) for d in details]
        base = values[0]
        deltas: list[float | None] = [None]
        deltas.extend(None if base is None or v is None else v - base for v in values[1:])
        out.append((name, values, deltas))
    return out
