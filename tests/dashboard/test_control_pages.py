"""The control plane's pages in a real browser: a held job watched through its states
without a reload and stepped with the page's buttons, faults added and deleted, the
journal filtered; every state-changing form refused without this session's CSRF token.
Against a live server in mock mode (tests/dashboard/test_browser.py's fixtures)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.dashboard.test_browser import (
    Live,
    browser,  # noqa: F401 (fixtures)
    live,  # noqa: F401
    login,
    page,  # noqa: F401
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
UI = "/_evaldock/ui"


def _held_objective_job(live: Live) -> str:  # noqa: F811
    r = live.http.put(
        "/_evaldock/jobs/objective/timing", json={"mode": "hold"}, headers=live.control
    )
    assert r.status_code == 200, r.text
    body = {"data": [{"query": "q", "object": {"t": "q"}}, {"query": "r", "object": {"t": "r"}}]}
    made = live.http.post("/v1/evaluations", json=body, headers={"Authorization": "Bearer test"})
    return str(made.json()["id"])


def _job(live: Live, job_id: str) -> dict[str, Any]:  # noqa: F811
    jobs = live.http.get("/_evaldock/jobs?all=1", headers=live.control).json()["jobs"]
    return next(j for j in jobs if j["id"] == job_id)


def test_a_held_job_advances_on_the_jobs_page_without_a_reload(page: Any, live: Live) -> None:  # noqa: F811
    from playwright.sync_api import expect

    page.goto(live.url + UI + "/login")
    login(page, live, live.key)
    page.click("nav >> text=Jobs")
    row = page.locator(f'tr[data-job="{live.held}"]')
    assert row.locator(".badge").inner_text() == "queued"
    assert row.locator(".held").is_visible()
    assert page.locator('tr[data-timing="objective"] td.mode').inner_text() == "hold"
    shot(page, "jobs")
    page.evaluate("window.__not_reloaded = true")
    advance = f"/_evaldock/jobs/objective/{live.held}/advance"
    assert live.http.post(advance, headers=live.control).status_code == 200
    expect(row.locator(".badge")).to_have_text("running", timeout=10_000)
    assert live.http.post(advance, headers=live.control).status_code == 200
    expect(row.locator(".badge")).to_have_text("completed", timeout=10_000)
    expect(row.locator(".progress .count")).to_have_text("2/2", timeout=10_000)
    assert row.locator("button.advance").count() == 0  # an ended job has no levers
    assert page.evaluate("window.__not_reloaded") is True


def test_the_jobs_page_buttons_advance_and_fail_a_job(page: Any, live: Live) -> None:  # noqa: F811
    job_id = _held_objective_job(live)
    page.goto(live.url + UI + "/login")
    login(page, live, live.key)
    page.goto(live.url + UI + "/control/jobs")
    page.click(f'button[aria-label="Advance job {job_id}"]')
    assert "advanced: now running" in page.inner_text("#flash")
    assert _job(live, job_id)["status"] == "running"
    page.fill(f'input[aria-label="Reason to fail job {job_id}"]', "stopped from the page")
    page.click(f'button[aria-label="Fail job {job_id}"]')
    assert "stopped from the page" in page.inner_text("#flash")
    ended = _job(live, job_id)
    assert (ended["status"], ended["error"]) == ("failed", "stopped from the page")
    page.click("#hold-spice")  # the timing lever, as PUT /_evaldock/jobs/spice/timing
    timing = live.http.get("/_evaldock/jobs/spice/timing", headers=live.control).json()
    assert timing["mode"] == "hold"
    page.select_option("#mode-spice", "immediate")
    page.click("#set-timing-spice")
    timing = live.http.get("/_evaldock/jobs/spice/timing", headers=live.control).json()
    assert timing["mode"] == "immediate"


def test_faults_are_added_and_deleted_from_the_page(page: Any, live: Live) -> None:  # noqa: F811
    page.goto(live.url + UI + "/login")
    login(page, live, live.key)
    page.click("nav >> text=Faults")
    page.select_option("#fault-surface", "objective")
    page.select_option("#fault-method", "GET")
    page.fill("#fault-path", "/v1/evaluations*")
    page.fill("#fault-status", "503")
    page.fill("#fault-message", "down for the test")
    page.fill("#fault-count", "2")
    page.click("#add-fault-button")
    (fault,) = live.http.get("/_evaldock/faults", headers=live.control).json()["faults"]
    assert (fault["surface"], fault["method"], fault["path"], fault["status"]) == (
        "objective",
        "GET",
        "/v1/evaluations*",
        503,
    )
    assert fault["remaining"] == 2 and f"Fault {fault['id']} added" in page.inner_text("#flash")
    assert page.locator(f'tr[data-fault="{fault["id"]}"]').count() == 1
    r = live.http.get("/v1/evaluations", headers={"Authorization": "Bearer test"})
    assert r.status_code == 503 and "down for the test" in r.text  # it applies
    shot(page, "faults")
    page.click(f'button[aria-label="Delete fault {fault["id"]}"]')
    assert page.locator(f'tr[data-fault="{fault["id"]}"]').count() == 0
    assert live.http.get("/_evaldock/faults", headers=live.control).json()["faults"] == []
    r = live.http.get("/v1/evaluations", headers={"Authorization": "Bearer test"})
    assert r.status_code == 200
    # Out of the API's bounds: refused, saying which field.
    page.fill("#fault-status", "700")
    page.evaluate("document.getElementById('fault-status').removeAttribute('max')")
    page.click("#add-fault-button")
    assert "status must be from 200 to 599" in page.inner_text("#flash")


def test_the_journal_filters_as_the_api_does(page: Any, live: Live) -> None:  # noqa: F811
    page.goto(live.url + UI + "/login")
    login(page, live, live.key)
    page.click("nav >> text=Journal")
    page.select_option("#journal-surface", "objective")
    page.select_option("#journal-method", "POST")
    page.fill("input[name=limit]", "1000")
    page.click("#journal-apply")
    rows = page.locator("#journal-table tbody tr[data-entry]")
    shown = [r.get_attribute("data-entry") for r in rows.all()]
    api = live.http.get(
        "/_evaldock/journal",
        params={"surface": "objective", "method": "POST"},
        headers=live.control,
    ).json()["entries"]
    assert shown == [e["id"] for e in reversed(api)] and shown  # newest first
    assert {r.get_attribute("data-surface") for r in rows.all()} == {"objective"}
    assert "authorization" in (page.locator("#journal-table pre").first.text_content() or "")
    assert "Bearer test" not in page.content()  # masked as the API masks it
    shot(page, "journal")
    page.fill("#journal-path", "/v1/evaluations/*")
    page.select_option("#journal-method", "")
    page.click("#journal-apply")
    paths = page.locator("#journal-table tbody tr[data-entry] code").all_inner_texts()
    assert paths and all(p.startswith("/v1/evaluations/") for p in paths)


def test_state_changing_forms_need_this_sessions_token(live: Live) -> None:  # noqa: F811
    with httpx.Client(base_url=live.url, timeout=30) as http:
        # Not logged in: to the login page, nothing done.
        r = http.post(UI + "/control/faults", data={"surface": "*"})
        assert r.status_code == 303 and "/login" in r.headers["location"]
        assert http.get(UI + "/control/jobs.json").status_code == 401
        form = http.get(UI + "/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', form)
        assert token is not None
        r = http.post(UI + "/login", data={"csrf": token[1], "key": live.key, "next": UI + "/"})
        assert r.status_code == 303
        for path in ("/control/faults", "/control/faults/clear", "/control/journal/clear"):
            for data in ({"surface": "*"}, {"csrf": "not-the-token", "surface": "*"}):
                assert http.post(UI + path, data=data).status_code == 403
        assert live.http.get("/_evaldock/faults", headers=live.control).json()["faults"] == []
        assert live.http.get("/_evaldock/journal", headers=live.control).json()["entries"]
