"""The read model a surface offers the dashboard: typed rows, never SQL in the UI.

A surface declares ``SurfaceDeclaration(views=XRunsView)``; the class lives in
``server/<vendor>/views.py`` beside the surface's store and holds the only SQL that
reads its tables for the dashboard. Every method is a plain function of a read-only
``sqlite3.Connection`` whose rows are ``sqlite3.Row`` (the dashboard runs it on a reader thread with
``Database.read_off_loop``: a page over 100,000 rows must not hold the event loop), so
a unit test calls it with ``sqlite3.connect``.

Paging, and why each kind:

- runs: keyset on ``(created_at, id)`` (an index per surface). The runs table merges
  every surface's page: each surface returns its first ``limit`` rows past the cursor
  and the dashboard keeps the first ``limit`` of the merge, so a page costs
  ``surfaces x limit`` rows at any depth (OFFSET across a merge would cost the offset).
- cases: LIMIT/OFFSET on a covering index (``(run, scorer, value, idx)``): a page can be
  jumped to by number and one 100,000 rows deep walks index entries only (ms).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# The core job states (server/jobs.py JobState), the runs table's status filter.
STATES = ("queued", "running", "waiting", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunsQuery:
    """One page of runs: newest first unless ``order="asc"``; ``after`` is the
    ``(created_at, id)`` of the last row of the previous page, in that order."""

    limit: int = 50
    order: Literal["asc", "desc"] = "desc"
    after: tuple[str, str] | None = None
    status: str | None = None  # a core state


@dataclass(frozen=True)
class RunRow:
    surface: str
    tenant: str  # masked (server/masking.py mask_key), never the stored digest
    id: str
    name: str
    dataset: str
    model: str  # the model, or the engine that scored
    status: str  # the core state
    vendor_status: str  # the surface's word for it
    processed: int
    total: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    metrics: dict[str, float] = field(default_factory=dict)  # headline metrics
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.created_at, self.id)


@dataclass(frozen=True)
class RunDetail:
    row: RunRow
    metrics: dict[str, float]  # every metric, by name
    signature: str | None  # what produced the scores (engines, versions)
    configuration: dict[str, Any]  # what the run was asked to do
    scorers: list[str]  # the per-case score columns, in order
    # A score below this fails a case (the cases table's "failed only").
    pass_threshold: float | None = None
    note: str = ""  # e.g. why a surface keeps no per-case rows


@dataclass(frozen=True)
class CasesQuery:
    """Cases of one run: filtered on ``scorer`` (the first when empty), sorted by case
    index or by that scorer's score, a page at ``offset``. ``q`` keeps the cases whose
    input, ideal or output holds it (a substring, ASCII case-insensitive: SQL ``LIKE``,
    at most ``readsql.MAX_Q`` characters); a view that cannot search ignores it."""

    scorer: str = ""
    failed_only: bool = False
    min_score: float | None = None
    max_score: float | None = None
    sort: Literal["idx", "score"] = "idx"
    order: Literal["asc", "desc"] = "asc"
    offset: int = 0
    limit: int = 50
    q: str = ""


@dataclass(frozen=True)
class CaseRow:
    idx: int
    input: str
    ideal: str | None
    output: str | None
    scores: dict[str, float | None]
    failed: bool
    detail: str = ""  # a judge's explanation, an error


@dataclass(frozen=True)
class CasesPage:
    rows: list[CaseRow]
    total: int  # cases matching the filter
    scorer: str  # the scorer filtered and sorted on


@dataclass(frozen=True)
class Histogram:
    """How one scorer's per-case scores spread: ``(bin label, count)`` in order."""

    scorer: str
    bins: list[tuple[str, int]]


class RunsView(Protocol):
    """A surface's read model (``server/<vendor>/views.py``)."""

    surface: str
    # The job kind of its runs: the overview counts runs by state from job_view.
    job_kind: str

    def runs(self, conn: sqlite3.Connection, query: RunsQuery) -> list[RunRow]: ...

    def run(self, conn: sqlite3.Connection, run_id: str) -> RunDetail | None: ...

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage: ...

    def histograms(self, conn: sqlite3.Connection, run_id: str) -> list[Histogram]: ...
