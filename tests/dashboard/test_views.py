"""The surfaces' read models (server/<vendor>/views.py) over a migrated database: keyset
pages of runs, one run's detail, cases filtered, sorted and paged, histograms; and the
dashboard's helpers (diff highlighting, sessions)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from evaldock.server import jsonio
from evaldock.server.dashboard.charts import metric_bars, number
from evaldock.server.dashboard.pages import highlight
from evaldock.server.dashboard.sessions import Sessions, same
from evaldock.server.db import Database
from evaldock.server.marqtune.views import MarqtuneRunsView, flat_metrics, headline
from evaldock.server.objective.views import ObjectiveRunsView
from evaldock.server.readmodel import CasesQuery, RunsQuery
from evaldock.server.spice.views import SpiceRunsView

TENANT = "0123456789abcdef01234567"


def migrated(path: Path) -> None:
    async def go() -> None:
        db = Database(path)
        await db.open()
        await db.migrate("core", "evaldock.server")
        for name in ("spice", "objective", "marqtune"):
            await db.migrate(name, f"evaldock.server.{name}")
        await db.close()

    asyncio.run(go())


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "evaldock.sqlite3"
    migrated(path)
    c = sqlite3.connect(path)
    c.row_factory = sqlite3.Row
    yield c
    c.close()


def job(c: sqlite3.Connection, ident: str, kind: str, status: str, done: int, total: int) -> None:
    c.execute(
        "INSERT INTO jobs (id, kind, tenant, status, processed, total, created_at, started_at,"
        " finished_at, updated_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ident,
            kind,
            TENANT,
            status,
            done,
            total,
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:01:05Z" if status == "completed" else None,
            "2025-01-01T00:00:00Z",
            "broke" if status == "failed" else None,
        ),
    )


def spice_run(c: sqlite3.Connection, ident: str, created: str, status: str, n: int = 10) -> None:
    spec = {"eval": "e", "dataset": "d", "model": "replay", "scorers": ["match", "lev"]}
    c.execute(
        "INSERT INTO spice_runs (id, tenant, eval, dataset, model, scorers, metrics, spec,"
        " created_at, signature) VALUES (?, ?, 'e', 'd', 'replay', ?, ?, ?, ?, 'sig')",
        (
            ident,
            TENANT,
            '["match", "lev"]',
            '{"match/mean": 0.5}',
            jsonio.encode(spec),
            created,
        ),
    )
    job(c, ident, "spice.eval", status, n, n)
    rows = []
    for i in range(n):
        rows.append((ident, TENANT, i, "match", created, f"in{i}", f"out{i}", f"ideal{i}", i % 2))
        rows.append((ident, TENANT, i, "lev", created, f"in{i}", f"out{i}", f"ideal{i}", i / n))
    c.executemany(
        "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input, actual,"
        " expected, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    c.commit()


def test_spice_runs_page_by_keyset_both_ways_and_filter_by_state(conn) -> None:
    for i in range(7):
        spice_run(conn, f"r{i}", f"2025-01-0{i + 1}T00:00:00Z", "failed" if i == 3 else "completed")
    view = SpiceRunsView()
    first = view.runs(conn, RunsQuery(limit=3))
    assert [r.id for r in first] == ["r6", "r5", "r4"]
    second = view.runs(conn, RunsQuery(limit=3, after=first[-1].key))
    assert [r.id for r in second] == ["r3", "r2", "r1"]
    back = view.runs(conn, RunsQuery(limit=3, order="asc", after=second[0].key))
    assert [r.id for r in back] == ["r4", "r5", "r6"]
    failed = view.runs(conn, RunsQuery(status="failed"))
    assert [(r.id, r.error, r.vendor_status) for r in failed] == [("r3", "broke", "Failed")]
    row = first[0]
    assert row.tenant == "01****67"  # masked as the journal masks keys
    assert (row.processed, row.total, row.metrics) == (10, 10, {"match/mean": 0.5})


def test_spice_cases_filter_sort_page_and_histograms(conn) -> None:
    spice_run(conn, "r", "2025-01-01T00:00:00Z", "completed", n=10)
    view = SpiceRunsView()
    detail = view.run(conn, "r")
    assert detail is not None and detail.scorers == ["match", "lev"]
    assert detail.signature == "sig" and detail.configuration["model"] == "replay"
    page = view.cases(conn, "r", CasesQuery(failed_only=True))
    assert page.total == 5 and [c.idx for c in page.rows] == [0, 2, 4, 6, 8]
    assert all(c.failed for c in page.rows)
    assert page.rows[0].scores == {"match": 0.0, "lev": 0.0}
    assert (page.rows[1].input, page.rows[1].output, page.rows[1].ideal) == (
        "in2",
        "out2",
        "ideal2",
    )
    by_lev = view.cases(
        conn, "r", CasesQuery(scorer="lev", sort="score", order="desc", limit=3, offset=3)
    )
    assert [c.idx for c in by_lev.rows] == [6, 5, 4] and by_lev.total == 10
    ranged = view.cases(conn, "r", CasesQuery(scorer="lev", min_score=0.25, max_score=0.55))
    assert [c.idx for c in ranged.rows] == [3, 4, 5]
    unknown = view.cases(conn, "r", CasesQuery(scorer="nope"))
    assert unknown.scorer == "match"  # the first scorer when the name is not one
    hist = {h.scorer: dict(h.bins) for h in view.histograms(conn, "r")}
    assert hist["match"]["0.0"] == 5 and hist["match"]["0.9"] == 5
    assert [hist["lev"][f"{i / 10:.1f}"] for i in range(10)] == [1] * 10
    assert view.run(conn, "missing") is None
    assert view.cases(conn, "missing", CasesQuery()).rows == []


def objective_run(c: sqlite3.Connection) -> None:
    """Objective evaluation ``ev``: judge ``mock``, 4 pairs, completed."""
    c.execute(
        "INSERT INTO objective_evaluations VALUES ('ev', ?, 'demo', 'mock', 'judge:mock', 4,"
        " '2025-01-01T00:00:00Z')",
        (TENANT,),
    )
    job(c, "ev", "objective.evaluation", "completed", 4, 4)


def test_objective_cases_fail_on_irrelevant_or_error(conn) -> None:
    objective_run(conn)
    items = [(0, 2, None), (1, 0, None), (2, None, "judge down"), (3, 1, None)]
    for idx, score, error in items:
        conn.execute(
            "INSERT INTO objective_items VALUES ('ev', ?, ?, ?, 'label', 'why', ?)",
            (idx, jsonio.encode({"query": f"q{idx}", "object": {"t": idx}}), score, error),
        )
    conn.commit()
    view = ObjectiveRunsView()
    (row,) = view.runs(conn, RunsQuery())
    assert row.metrics == {
        "relevance/mean": 1.0,
        "relevant/rate": pytest.approx(2 / 3),
        "highly_relevant/rate": pytest.approx(1 / 3),
    }
    failed = view.cases(conn, "ev", CasesQuery(failed_only=True))
    assert [c.idx for c in failed.rows] == [1, 2]
    assert failed.rows[1].detail == "judge down" and failed.rows[0].output == '{"t":1}'
    ordered = view.cases(conn, "ev", CasesQuery(sort="score", order="desc"))
    assert [c.idx for c in ordered.rows] == [0, 3, 1, 2]
    (hist,) = view.histograms(conn, "ev")
    assert hist.bins == [("0", 1), ("1", 1), ("2", 1), ("error", 1)]


def test_marqtune_metrics_flattened_and_no_cases() -> None:
    metrics = {
        "ndcg": {"NDCG@1": 0.5, "NDCG@10": 0.75},
        "mrr": {"MRR@10": 1},
        "summary": {"mAP@1000": [0.4], "mERR": 0.3},
    }
    assert flat_metrics(metrics) == {"NDCG@1": 0.5, "NDCG@10": 0.75, "MRR@10": 1.0}
    assert headline(metrics) == {"mAP@1000": 0.4, "mERR": 0.3}
    view = MarqtuneRunsView()
    assert view.cases(sqlite3.connect(":memory:"), "x", CasesQuery()).total == 0


def test_objective_and_marqtune_run_detail_and_a_deleted_run_is_gone(conn) -> None:
    objective_run(conn)
    for ident, deleted in (("me", None), ("gone", "2025-01-02T00:00:00Z")):
        conn.execute(
            "INSERT INTO marqtune_evaluations (id, tenant, dataset_id, model, checkpoint,"
            " load_model, hyperparameters, metrics, ranker_signature, deleted_at, created_at)"
            " VALUES (?, ?, 'ds', 'm', 'ck', 'm/ck', ?, ?, 'ranker:1', ?, '2025-01-01T00:00:00Z')",
            (ident, TENANT, '{"k": 10}', '{"ndcg": {"NDCG@10": 0.75}}', deleted),
        )
        job(conn, ident, "marqtune.evaluation", "completed", 1, 1)
    conn.commit()
    objective = ObjectiveRunsView().run(conn, "ev")
    assert objective is not None and objective.signature == "judge:mock"
    assert objective.configuration == {"eval_name": "demo", "judge": "mock", "items": 4}
    marqtune = MarqtuneRunsView()
    detail = marqtune.run(conn, "me")
    assert detail is not None and detail.signature == "ranker:1"
    assert detail.configuration["hyperparameters"] == {"k": 10}
    assert detail.metrics == {"NDCG@10": 0.75} and detail.row.status == "completed"
    assert marqtune.run(conn, "gone") is None
    assert ObjectiveRunsView().run(conn, "missing") is None


def test_highlight_escapes_and_marks_the_difference() -> None:
    ideal, output = highlight("<b>Paris</b>", "<b>Pariss</b>")
    assert "<b>" not in str(ideal) and "&lt;b&gt;" in str(output)
    assert "<ins>s</ins>" in str(output)
    assert highlight(None, "x") == ("", "x")


def test_charts_write_each_value_as_text() -> None:
    svg = str(metric_bars({"a<b": 0.25, "mean": 1.5}))
    assert 'data-metric="a&lt;b"' in svg and ">0.25</text>" in svg and ">1.5</text>" in svg
    assert number(0.66666666) == "0.6667" and number(-0.0) == "0"


def test_sessions_expire_and_stay_bounded() -> None:
    sessions = Sessions(ttl=-1)
    expired = sessions.create()
    assert sessions.get(expired.id) is None
    bounded = Sessions(limit=2)
    first, *_ = [bounded.create() for _ in range(3)]
    assert bounded.get(first.id) is None
    assert same("a", "a") and not same("a", "b") and not same(None, None)


def test_case_search_is_a_bounded_substring_with_like_wildcards_escaped(conn) -> None:
    spice_run(conn, "r", "2025-01-01T00:00:00Z", "completed", n=12)
    conn.execute(
        "UPDATE spice_results SET actual = 'a 100% match_here' WHERE run_id = 'r' AND idx = 7"
    )
    conn.commit()
    view = SpiceRunsView()
    assert [c.idx for c in view.cases(conn, "r", CasesQuery(q="in1")).rows] == [1, 10, 11]
    assert [c.idx for c in view.cases(conn, "r", CasesQuery(q="IDEAL3")).rows] == [3]
    # % and _ are the text they are, not LIKE's wildcards.
    assert [c.idx for c in view.cases(conn, "r", CasesQuery(q="100%")).rows] == [7]
    assert view.cases(conn, "r", CasesQuery(q="0%m")).total == 0
    assert [c.idx for c in view.cases(conn, "r", CasesQuery(q="h_h")).rows] == [7]
    assert view.cases(conn, "r", CasesQuery(q="out_")).total == 0
    # With the other filters: failed (match = 0) cases holding "1".
    both = view.cases(conn, "r", CasesQuery(q="1", failed_only=True))
    assert [c.idx for c in both.rows] == [10] and both.total == 1

    conn.execute(
        "INSERT INTO objective_evaluations VALUES ('ev', ?, 'demo', 'mock', 'judge:mock', 2,"
        " '2025-01-01T00:00:00Z')",
        (TENANT,),
    )
    for idx, item in enumerate(
        [{"query": "red shirt", "object": {"title": "Blue"}}, {"query": "dress", "object": "red"}]
    ):
        conn.execute(
            "INSERT INTO objective_items VALUES ('ev', ?, ?, 1, 'label', 'why', NULL)",
            (idx, jsonio.encode(item)),
        )
    conn.commit()
    objective = ObjectiveRunsView()
    assert [c.idx for c in objective.cases(conn, "ev", CasesQuery(q="red")).rows] == [0, 1]
    assert [c.idx for c in objective.cases(conn, "ev", CasesQuery(q="blue")).rows] == [0]
    assert objective.cases(conn, "ev", CasesQuery(q="query")).total == 0  # keys are not text
