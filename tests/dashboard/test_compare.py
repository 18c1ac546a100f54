"""Compare: the changed cases of runs lined up by index, streamed through the read
models a chunk at a time (regressions first), over a migrated database; and the got
over HTTP, its deltas against the runs' own metrics."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evaldock.server.dashboard import compare
from evaldock.server.dashboard.charts import compare_bars
from evaldock.server.dashboard.compare import (
    Side,
    compare_cases,
    metric_rows,
    pick_scorers,
    stream,
)
from evaldock.server.readmodel import CasesPage, CasesQuery, RunsView
from evaldock.server.spice.views import SpiceRunsView
from tests.dashboard.test_views import TENANT, job, migrated


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "evaldock.sqlite3"
    migrated(path)
    c = sqlite3.connect(path)
    c.row_factory = sqlite3.Row
    yield c
    c.close()


def results(
    c: sqlite3.Connection, run: str, scores: list[float | None], inputs: list[str] | None = None
) -> None:
    c.execute(
        "INSERT INTO spice_runs (id, tenant, eval, dataset, model, scorers, metrics, spec,"
        " created_at, signature) VALUES (?, ?, 'e', 'd', 'replay', '[\"match\"]', ?, '{}',"
        " '2025-01-01T00:00:00Z', 'sig')",
        (run, TENANT, '{"match/mean": %r}' % (sum(s or 0 for s in scores) / len(scores))),
    )
    job(c, run, "spice.eval", "completed", len(scores), len(scores))
    c.executemany(
        "INSERT INTO spice_results (run_id, tenant, idx, scorer, created_at, input, actual,"
        " expected, value) VALUES (?, ?, ?, 'match', 'x', ?, ?, 'ideal', ?)",
        [
            (run, TENANT, i, (inputs or [])[i] if inputs else f"q{i}", f"{run}-out{i}", v)
            for i, v in enumerate(scores)
        ],
    )
    c.commit()


def sides(c: sqlite3.Connection, *runs: str) -> list[Side]:
    view = SpiceRunsView()
    details = [view.run(c, r) for r in runs]
    assert all(d is not None for d in details)
    scorers, _ = pick_scorers([d for d in details if d is not None])
    return [
        Side("spice", r, view, d, s)
        for r, d, s in zip(runs, details, scorers, strict=True)
        if d is not None
    ]


class Counting:
    """A read model that counts the rows it hands out per call (the stream's bound)."""

    def __init__(self, inner: RunsView) -> None:
        self.inner = inner
        self.largest = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def cases(self, conn: sqlite3.Connection, run_id: str, query: CasesQuery) -> CasesPage:
        assert query.sort == "idx" and query.order == "asc"
        got = self.inner.cases(conn, run_id, query)
        self.largest = max(self.largest, len(got.rows))
        self.calls += 1
        return got


@pytest.mark.parametrize("every", [2000, 2, 3])  # marks: none, then many
def test_changed_cases_regressions_first_then_improvements_by_index(
    db: sqlite3.Connection, every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compare, "MARK_EVERY", every)
    base = [1, 1, 0, 0, 1, 0.5, None, 1, 0, 1]
    new = [1, 0, 1, 0, 0, 0.5, 1, 0.25, 1, 1]
    results(db, "a", base)
    results(db, "b", new)
    s = sides(db, "a", "b")
    got = compare_cases(db, s, offset=0, limit=50, chunk=3)
    assert [(d.idx, d.kind) for d in got.rows] == [
        (1, "regression"),
        (4, "regression"),
        (7, "regression"),
        (2, "improvement"),
        (8, "improvement"),
        (6, "changed"),  # a score appeared
    ]
    t = got.tally
    assert (t.compared, t.regression, t.improvement, t.changed) == (10, 3, 2, 1)
    assert got.rows[2].deltas == [None, pytest.approx(-0.75)]
    assert got.rows[0].outputs == ["a-out1", "b-out1"] and got.rows[0].input == "q1"
    # Every window of every size gives the same order, got by got (both passes).
    everything = [(d.idx, d.kind) for d in got.rows]
    for limit in (1, 2, 4):
        paged = []
        for offset in range(0, 8, limit):
            paged += [(d.idx, d.kind) for d in compare_cases(db, s, offset, limit, 3).rows]
        assert paged == everything
    assert len(got.tally.marks) == (0 if every == 2000 else (10 - 1) // every)
    # Given the counts (and marks) of an earlier call: one pass, the same pages.
    for offset in range(0, 6):
        again = compare_cases(db, s, offset, 1, 3, known=got.tally).rows
        assert [(d.idx, d.kind) for d in again] == everything[offset : offset + 1]


def test_cases_that_do_not_line_up_are_counted_not_compared(db: sqlite3.Connection) -> None:
    results(db, "a", [1, 1, 1, 1])
    results(db, "b", [0, 0, 0], inputs=["q0", "other", "q2"])
    got = compare_cases(db, sides(db, "a", "b"), 0, 50, chunk=2)
    t = got.tally
    assert (t.compared, t.mismatched, t.missing) == (2, 1, 1)
    assert t.first_mismatch == (1, "q1", "other")
    assert [d.idx for d in got.rows] == [0, 2]


def test_three_runs_against_the_first_and_bounded_reads(db: sqlite3.Connection) -> None:
    n = 2500
    results(db, "a", [1.0] * n)
    results(db, "b", [1.0 if i % 10 else 0.0 for i in range(n)])
    results(db, "c", [1.0] * n)
    s = sides(db, "a", "b", "c")
    counting = Counting(SpiceRunsView())
    s = [Side(x.surface, x.run_id, counting, x.detail, x.scorer) for x in s]  # type: ignore[arg-type]
    got = compare_cases(db, s, offset=240, limit=20, chunk=500)
    assert got.tally.regression == 250
    assert [d.idx for d in got.rows] == [i * 10 for i in range(240, 250)]
    assert all(d.deltas == [None, -1.0, 0.0] for d in got.rows)
    # A chunk at a time, doubling from 500 (500, 1000, then the last 1000 of 2000 asked):
    # three calls per run per pass, never the run at once.
    assert counting.largest == 1000 and counting.calls <= 3 * 3 * 2
    assert [c.idx for c in stream(db, s[0], chunk=700)] == list(range(n))


def test_scorers_metrics_and_chart() -> None:
    from evaldock.server.readmodel import RunDetail, RunRow

    def detail(ident: str, scorers: list[str], metrics: dict[str, float]) -> RunDetail:
        row = RunRow("s", "t", ident, "", "d", "m", "completed", "Completed", 1, 1, "x", None, None)
        return RunDetail(row, metrics, None, {}, scorers)

    a = detail("a", ["match", "lev"], {"acc": 0.5, "f1": 0.25})
    b = detail("b", ["lev", "match"], {"acc": 0.75})
    c = detail("c", ["relevance"], {})
    assert pick_scorers([a, b]) == (["match", "match"], "")
    assert pick_scorers([a, b], "lev") == (["lev", "lev"], "")
    firsts, note = pick_scorers([a, c])
    assert firsts == ["match", "relevance"] and "No scorer is common" in note
    assert metric_rows([a, b]) == [
        ("acc", [0.5, 0.75], [None, 0.25]),
        ("f1", [0.25, None], [None, None]),
    ]
    svg = str(compare_bars(["a", "b<"], [("acc", [0.5, 0.75]), ("f1", [0.25, None])], "t"))
    assert 'data-metric="acc"' in svg and 'data-value="0.75"' in svg and "b&lt;" in svg
    assert svg.count('class="bar s1"') == 2 and ">—</text>" in svg


# -- in a real browser, against a live server (tests/dashboard/test_browser.py) ------------
from tests.dashboard.test_browser import (  # noqa: E402
    CASES,
    Live,
    browser,  # noqa: F401 (fixtures)
    live,  # noqa: F401
    login,
    page,  # noqa: F401
    shot,
)


def _second_spice_run(live: Live) -> dict[str, Any]:  # noqa: F811
    """The first run's dataset scored again: outputs right except every fourth."""
    data = [
        {
            "input": f"question {i}",
            "ideal": f"answer {i}",
            "output": f"answer {i}" if i % 4 else f"wrong {i}",
        }
        for i in range(CASES)
    ]
    body = {"dataset": "demo_ds", "scorers": ["match", "levenshtein"], "data": data}
    spice = {"Authorization": "Bearer test"}
    assert live.http.put("/v1/evals/demo2", json=body, headers=spice).status_code == 200
    run: dict[str, Any] = live.http.post(
        "/v1/evals/demo2", json={"model": "replay"}, headers=spice
    ).json()[0]
    assert run["status"] == "Completed", run
    return run


@pytest.mark.browser
@pytest.mark.slow
def test_compare_two_runs_from_the_runs_table(page: Any, live: Live) -> None:  # noqa: F811
    second = _second_spice_run(live)
    first = live.spice
    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    page.goto(live.url + "/_evaldock/ui/runs?surface=spice&order=asc")
    page.check(f'input[name=run][value="spice:{first["id"]}"]')
    page.check(f'input[name=run][value="spice:{second["id"]}"]')
    page.click("#compare-button")
    assert "/_evaldock/ui/compare?" in page.url

    # The deltas shown are the API's metrics subtracted; the bars carry the API's values.
    for name, value in first["metrics"].items():
        row = page.locator(f'#metric-deltas tr[data-metric="{name}"]')
        delta = second["metrics"][name] - value
        assert float(row.locator("td.delta").get_attribute("data-delta")) == pytest.approx(delta)
        assert abs(float(row.locator("td.delta").inner_text().lstrip("+")) - delta) < 5e-5
        bars = page.locator(f'svg[data-chart="compare"] g.group[data-metric="{name}"] g.bar')
        assert [float(b.get_attribute("data-value")) for b in bars.all()] == [
            value,
            second["metrics"][name],
        ]

    # Scored on `match`: right then wrong is a regression, wrong then right an improvement.
    regressions = [i for i in range(CASES) if i % 3 and not i % 4]
    improvements = [i for i in range(CASES) if not i % 3 and i % 4]
    assert page.inner_text("#n-regressions") == str(len(regressions))
    assert page.inner_text("#n-improvements") == str(len(improvements))
    shown = page.locator("table.compare-cases tbody tr")
    kinds = [r.get_attribute("data-kind") for r in shown.all()]
    idxs = [int(r.get_attribute("data-case")) for r in shown.all()]
    assert idxs == (regressions + improvements)[:50]
    assert kinds == (["regression"] * len(regressions) + ["improvement"] * len(improvements))[:50]
    shot(page, "compare")
    page.goto(page.url + "&per=20")
    page.click("#compare-next")
    assert "page=2" in page.url
    shown = page.locator("table.compare-cases tbody tr")
    assert [int(r.get_attribute("data-case")) for r in shown.all()] == (regressions + improvements)[
        20:40
    ]

    # Across surfaces: Spice's questions are not Objective's queries; the page says why.
    page.goto(
        f"{live.url}/_evaldock/ui/compare?run=spice:{first['id']}"
        f"&run=objective:{live.objective['id']}"
    )
    assert "different input" in page.inner_text("#compare-mismatch")
    assert "No scorer is common" in page.inner_text("#compare-note")
    # One run is not a comparison: a 400 saying so (fetched aside: a 400 the browser
    # loads is a console error, which the fixture counts).
    alone = page.request.get(f"{live.url}/_evaldock/ui/compare?run=spice:{first['id']}")
    assert alone.status == 400 and "two runs or more" in alone.text()
