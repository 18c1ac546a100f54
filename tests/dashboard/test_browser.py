"""The dashboard in a real browser (Chromium through playwright) against a live server in
mock mode holding runs on Spice, Objective and Marqtune made through their HTTP APIs.

Skipped when no Chromium is found: ``PLAYWRIGHT_CHROMIUM`` names one, else
``chromium`` on the PATH (``apt-get install -y chromium``). Playwright never downloads
a browser here. ``EVALDOCK_SCREENSHOTS=docs/img`` also writes each page's screenshot.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.marqtune.helpers import AUTH as MARQTUNE_AUTH
from tests.marqtune.helpers import EVAL_CSV, HYPER, dataset_body, wait_for
from tests.serverproc import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CASES = 120  # 40 fail `match` (every third), so the failed filter pages too


def chromium() -> str | None:
    found = os.environ.get("PLAYWRIGHT_CHROMIUM") or shutil.which("chromium")
    if not found and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    path = chromium()
    if path is None:
        pytest.skip(
            "no Chromium: apt-get install -y chromium, or set PLAYWRIGHT_CHROMIUM to its path"
        )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


class Live:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.url = server.url
        self.key = (server.data_dir / "control.key").read_text().strip()
        self.control = {"X-Evaldock-Control-Key": self.key}
        self.http = httpx.Client(base_url=server.url, timeout=30)
        self.spice: dict[str, Any] = {}
        self.spice_results: list[dict[str, Any]] = []
        self.objective: dict[str, Any] = {}
        self.marqtune: dict[str, Any] = {}
        self.held = ""


def _seed(live: Live) -> None:
    http, spice = live.http, {"Authorization": "Bearer test"}
    data = [
        {"input": f"question {i}", "ideal": f"answer {i}", "output": f"answer {i}"}
        if i % 3
        else {"input": f"question {i}", "ideal": f"answer {i}", "output": f"reply <{i}>"}
        for i in range(CASES)
    ]
    body = {"dataset": "demo_ds", "scorers": ["match", "levenshtein"], "data": data}
    assert http.put("/v1/evals/demo", json=body, headers=spice).status_code == 200
    live.spice = http.post("/v1/evals/demo", json={"model": "replay"}, headers=spice).json()[0]
    assert live.spice["status"] == "Completed", live.spice
    sql = f"SELECT scorer, value FROM eval.results WHERE run_id = '{live.spice['id']}'"
    r = http.post("/v1/sql", content=sql, headers={**spice, "Content-Type": "text/plain"})
    live.spice_results = r.json()

    objective = {"Authorization": "Bearer test"}
    pairs = [
        {"query": "shirts with stripes", "object": {"title": "striped shirt"}},
        {"query": "summer dress", "object": {"title": "Blue Shirt"}},
        {"query": "red shirt", "object": {"title": "red shirt"}},
    ]
    created = http.post(
        "/v1/evaluations",
        json={"configuration": {"eval_name": "relevance demo"}, "data": pairs},
        headers=objective,
    ).json()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live.objective = http.get(f"/v1/evaluations/{created['id']}", headers=objective).json()
        if live.objective["status"] not in ("accepted", "processing"):
            break
        time.sleep(0.05)
    assert live.objective["status"] == "completed", live.objective

    made = http.post("/datasets", json=dataset_body(), headers=MARQTUNE_AUTH).json()
    http.put(made["uploadUrl"], content=EVAL_CSV.encode())
    wait_for(http.get, f"/datasets/{made['datasetId']}", ("Ready",))
    r = http.post(
        "/evaluation",
        json={
            "datasetId": made["datasetId"],
            "model": "Marqo/ViT-B-32.laion2b_s34b_b79k",
            "hyperparameters": HYPER,
        },
        headers=MARQTUNE_AUTH,
    )
    evaluation = r.json()["evaluationId"]
    live.marqtune = wait_for(http.get, f"/evaluation/{evaluation}", ("Finished", "Failed"))

    # A job held by the control plane: queued until advanced (docs/control-plane.md).
    r = http.put("/_evaldock/jobs/objective/timing", json={"mode": "hold"}, headers=live.control)
    assert r.status_code == 200, r.text
    held = http.post("/v1/evaluations", json={"data": pairs[:2]}, headers=objective).json()
    live.held = held["id"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = ServerProcess(tmp_path_factory.mktemp("dashboard") / "data").start()
    try:
        state = Live(server)
        _seed(state)
        yield state
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, live: Live) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], f"console errors: {errors}"


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("EVALDOCK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"dashboard-{name}.png"))


def login(page: Any, live: Live, key: str) -> None:
    page.fill("#key", key)
    page.click("button[type=submit]")


def test_login_refuses_missing_and_wrong_keys_then_logs_in_and_out(page: Any, live: Live) -> None:
    page.goto(live.url + "/_evaldock/ui/runs")
    assert "/_evaldock/ui/login" in page.url
    shot(page, "login")
    login(page, live, "")
    assert "Enter the control key" in page.inner_text("#login-error")
    login(page, live, "not-the-key")
    assert "Wrong key" in page.inner_text("#login-error")
    login(page, live, live.key)
    assert page.url.endswith("/_evaldock/ui/runs")  # back where it was going
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["evaldock_ui"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert live.key not in session["value"]
    page.click("text=Log out")
    assert "/_evaldock/ui/login" in page.url
    page.goto(live.url + "/_evaldock/ui/")
    assert "/_evaldock/ui/login" in page.url  # the session ended with the logout


def test_every_page_and_the_charts_show_what_the_api_reports(page: Any, live: Live) -> None:
    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    # Overview: every surface, its runs by state, the held job with its progress bar.
    for surface in ("spice", "objective", "marqtune"):
        assert page.locator(f'article[data-surface="{surface}"]').count() == 1
    assert page.locator(f'tr[data-job="{live.held}"] progress').count() == 1
    shot(page, "overview")

    page.click("nav >> text=Runs")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 4  # spice, objective x2, marqtune
    shot(page, "runs")
    page.select_option("select[name=surface]", "objective")
    page.select_option("select[name=status]", "completed")
    page.click("text=Apply")
    assert page.locator("table.runs tbody tr").count() == 1
    page.goto(live.url + "/_evaldock/ui/runs")
    page.click("#sort-created")
    created = page.locator("table.runs tbody td.nowrap").all_inner_texts()
    assert created == sorted(created)  # oldest first

    page.click(f'tr[data-run="{live.spice["id"]}"] a')
    assert live.spice["id"] in page.url
    shown = {
        g.get_attribute("data-metric"): (
            g.get_attribute("data-value"),
            g.locator("text.value").text_content(),
        )
        for g in page.locator('svg[data-chart="metrics"] g.bar').all()
    }
    assert set(shown) == set(live.spice["metrics"])
    for name, value in live.spice["metrics"].items():
        exact, text = shown[name]
        assert float(exact) == value
        assert abs(float(text) - value) < 5e-5
    for scorer in ("match", "levenshtein"):
        values = [r["value"] for r in live.spice_results if r["scorer"] == scorer]
        expected = [0] * 10
        for v in values:
            expected[min(max(int(v * 10 + 1e-9), 0), 9)] += 1
        bins = page.locator(f'svg[data-chart="histogram"][data-scorer="{scorer}"] g.bin')
        assert [int(b.locator("text.count").text_content()) for b in bins.all()] == expected
    assert page.inner_text("#signature").startswith("scorers:match,levenshtein")
    shot(page, "run")

    # Failed only, then sort by score, then page.
    page.check("#failed-only")
    page.click("#apply-cases")
    failing = sum(1 for r in live.spice_results if r["scorer"] == "match" and r["value"] < 1)
    assert page.inner_text("#cases-count").startswith(f"{failing} cases match")
    cases = page.locator("table.cases tbody tr")
    assert cases.count() == min(failing, 50)
    assert all("failed" in (c.get_attribute("class") or "") for c in cases.all())
    assert page.locator("table.cases tbody tr ins").count() > 0  # the difference marked
    assert "<" in page.locator("table.cases tbody tr").first.inner_text()  # escaped, shown
    page.goto(page.url.split("?")[0])
    page.fill("#cases-q", "question 11")  # 11 and 110-119: a substring, in SQL
    page.click("#apply-cases")
    assert page.inner_text("#cases-count").startswith("11 cases match")
    found = [int(c.get_attribute("data-case")) for c in cases.all()]
    assert found == [11, *range(110, 120)]
    page.goto(page.url.split("?")[0])
    page.click("#sort-score")
    page.click("#sort-score")  # descending
    scores = [float(t) for t in page.locator('td.score[data-scorer="match"]').all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    before = page.locator("table.cases tbody tr").first.get_attribute("data-case")
    page.click("#cases-next")
    assert "page=2" in page.url
    assert page.locator("table.cases tbody tr").first.get_attribute("data-case") != before
    with page.expect_download() as download:
        page.click("#download-json")
    assert download.value.suggested_filename.endswith("-cases.json")

    # Objective: the relevance histogram counts the judgements the API returned.
    page.goto(f"{live.url}/_evaldock/ui/runs/objective/{live.objective['id']}")
    counts = {"0": 0, "1": 0, "2": 0, "error": 0}
    for judged in live.objective["judgements"]:
        verdict = judged["judgement"]
        counts["error" if verdict is None else str(verdict["score"])] += 1
    bins = page.locator('svg[data-chart="histogram"] g.bin').all()
    assert {b.get_attribute("data-bin"): int(b.get_attribute("data-count")) for b in bins} == (
        counts
    )

    # Marqtune: GCL's metrics at each k, as the API rounds them.
    page.goto(f"{live.url}/_evaldock/ui/runs/marqtune/{live.marqtune['evaluationId']}")
    shown = {
        g.get_attribute("data-metric"): float(g.get_attribute("data-value"))
        for g in page.locator('svg[data-chart="metrics"] g.bar').all()
    }
    for k, value in live.marqtune["evaluationMetrics"]["ndcg"].items():
        assert abs(shown[k] - value) < 1e-5

    # A phone: the page itself does not scroll sideways (tables scroll in their box).
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live.url + "/_evaldock/ui/runs")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1


def test_a_held_job_advances_on_its_page_without_a_reload(page: Any, live: Live) -> None:
    from playwright.sync_api import expect

    page.goto(live.url + "/_evaldock/ui/login")
    login(page, live, live.key)
    page.goto(f"{live.url}/_evaldock/ui/runs/objective/{live.held}")
    badge = "#run-status .badge"
    assert page.inner_text(badge) == "queued"
    page.evaluate("window.__not_reloaded = true")
    advance = f"/_evaldock/jobs/objective/{live.held}/advance"
    assert live.http.post(advance, headers=live.control).status_code == 200
    expect(page.locator(badge)).to_have_text("running", timeout=10_000)
    assert live.http.post(advance, headers=live.control).status_code == 200
    expect(page.locator(badge)).to_have_text("completed", timeout=10_000)
    assert page.is_visible("#run-finished")
    assert page.evaluate("window.__not_reloaded") is True
    assert page.inner_text("#run-progress .count") == "2/2"
