"""The dashboard's Qianfan, Oxen and OpenAI Evals run pages in a real browser (Chromium
through playwright) against a live server in mock mode, the runs made over HTTP through
each surface's own API (tests/dashboard/test_views_more.py ``seed``): the runs table
lists them, each run's charts show what its API reports (read from the SVG), its cases
filter to failures, and no page logs a console error.

Skipped when no Chromium is found (tests/dashboard/test_browser.py says how to get one).
``EVALDOCK_SCREENSHOTS=docs/img`` writes ``dashboard-run-<surface>.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.dashboard.test_browser import browser, login, page, shot
from tests.dashboard.test_views_more import DIMENSION, QIANFAN_CASES, Seeded, seed
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["browser", "page"]  # fixtures this module uses, defined there


class Live:
    def __init__(self, server: ServerProcess, seeded: Seeded) -> None:
        self.server = server
        self.url = server.url
        self.key = (server.data_dir / "control.key").read_text().strip()
        self.seeded = seeded


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Overrides test_browser's ``live`` (its ``page`` fixture asks for one)."""
    server = ServerProcess(tmp_path_factory.mktemp("surfaces") / "data").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            seeded = seed(http)
        yield Live(server, seeded)
    finally:
        server.stop()


def bars(page: Any) -> dict[str, tuple[float, float]]:
    """Each metric bar: (its exact value, the value written beside it)."""
    return {
        g.get_attribute("data-metric"): (
            float(g.get_attribute("data-value")),
            float(g.locator("text.value").text_content()),
        )
        for g in page.locator('svg[data-chart="metrics"] g.bar').all()
    }


def histogram(page: Any, scorer: str) -> dict[str, int]:
    found = page.locator(f'svg[data-chart="histogram"][data-scorer="{scorer}"] g.bin').all()
    return {b.get_attribute("data-bin"): int(b.locator("text.count").text_content()) for b in found}


def same(shown: dict[str, tuple[float, float]], expected: dict[str, float]) -> None:
    assert set(shown) == set(expected), (shown, expected)
    for name, value in expected.items():
        exact, written = shown[name]
        assert exact == pytest.approx(value, abs=1e-12), name
        assert abs(written - value) < 5e-5, name


def open_run(page: Any, live: Live, run_id: str) -> None:
    page.goto(live.url + "/_evaldock/ui/runs")
    page.click(f'tr[data-run="{run_id}"] td a')
    assert run_id in page.url


def failed_only(page: Any) -> Any:
    page.check("#failed-only")
    page.click("#apply-cases")
    return page.locator("table.cases tbody tr")


def test_the_runs_table_lists_every_surface(page: Any, live: Live) -> None:
    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    page.goto(live.url + "/_evaldock/ui/runs")
    s = live.seeded
    for surface, run_id in (
        ("qianfan", s.qianfan["evalIdStr"]),
        ("oxen", s.oxen["id"]),
        ("oxen", s.oxen_embeddings["id"]),
        ("openai", s.openai["id"]),
    ):
        row = page.locator(f'tr[data-run="{run_id}"]')
        assert row.get_attribute("data-surface") == surface
        assert "completed" in row.inner_text()
    page.select_option("select[name=surface]", "oxen")
    page.click("text=Apply")
    assert page.locator("table.runs tbody tr").count() == 2


def test_a_qianfan_task_shows_its_report(page: Any, live: Live) -> None:
    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    task = live.seeded.qianfan
    effect = live.seeded.qianfan_report["effectMetric"]
    open_run(page, live, task["evalIdStr"])
    keys = ("avgJudgeScore", "accuracy", "f1Score", "rouge_1", "rouge_2", "rouge_l", "bleu4")
    same(bars(page), {k: effect[k] for k in keys})
    # Qianfan's report charts: the judge's and the people's score distributions.
    assert histogram(page, "judgeScore") == effect["scoreDistribution"]
    (manual,) = effect["manualScoreDistribution"]
    assert histogram(page, f"manual: {DIMENSION}") == manual["scoreDistribution"]
    assert page.locator("table.cases tbody tr").count() == len(QIANFAN_CASES)
    shot(page, "run-qianfan")
    rows = failed_only(page)
    judged = {r["caseIndex"]: r["judgeScore"] for r in live.seeded.qianfan_results}
    failing = sorted(i for i, score in judged.items() if score < 3)
    assert page.inner_text("#cases-count").startswith(f"{len(failing)} cases match")
    assert [int(r.get_attribute("data-case")) for r in rows.all()] == failing
    assert all("failed" in (r.get_attribute("class") or "") for r in rows.all())


def test_an_oxen_evaluation_shows_its_rows(page: Any, live: Live) -> None:
    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    api = live.seeded.oxen
    open_run(page, live, api["id"])
    same(
        bars(page),
        {"rows processed": api["progress"]["processed"], "tokens used": api["tokens_used"]},
    )
    assert "ox/data @ main: data.parquet" in page.inner_text(".facts")
    assert "keep no per-case score" in page.inner_text("#cases-note")
    # The note sits above the rows: the evaluated rows are in the table too.
    shown = page.locator("table.cases tbody tr[data-case]")
    expected = [r["pred"] for r in live.seeded.oxen_results][: shown.count()]
    assert shown.count() > 0
    assert [t.strip() for t in shown.locator("td:nth-child(4)").all_inner_texts()] == expected
    shot(page, "run-oxen")
    base = f"{live.url}/_evaldock/ui/runs/oxen/{api['id']}/cases.json"
    cases = page.request.get(base).json()
    assert cases["total"] == len(live.seeded.oxen_results)
    assert [c["output"] for c in cases["cases"]] == [r["pred"] for r in live.seeded.oxen_results]
    assert page.request.get(base + "?failed=1").json() == {"total": 0, "cases": []}


def test_an_openai_run_shows_pass_rates_and_output_items(page: Any, live: Live) -> None:
    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    run, items = live.seeded.openai, live.seeded.openai_items
    names = {c["id"]: c["name"] for c in live.seeded.openai_eval["testing_criteria"]}
    open_run(page, live, run["id"])
    per = run["per_testing_criteria_results"]
    rates = {
        names[r["testing_criteria"]] + " pass rate": r["passed"] / (r["passed"] + r["failed"])
        for r in per
    }
    same(bars(page), rates)
    for r in per:
        shown = histogram(page, names[r["testing_criteria"]])
        assert shown == {"passed": r["passed"], "failed": r["failed"]}
    first = page.locator("table.cases tbody tr").first
    assert first.locator('td.score[data-scorer="Exact"]').inner_text() == "1"
    shot(page, "run-openai")
    rows = failed_only(page)
    failing = [i["datasource_item_id"] for i in items if i["status"] == "fail"]
    assert [int(r.get_attribute("data-case")) for r in rows.all()] == failing
    assert page.inner_text("#cases-count").startswith(f"{len(failing)} case")
