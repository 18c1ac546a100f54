"""The OpenAI Evals surface over its HTTP API (in-process; over a live server with
EVALDOCK_TEST_SERVER=1): files, evals, runs, output items, the Graders API, errors."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .helpers import (
    AUTH,
    BASE,
    CTRL,
    CTRL_KEY,
    ITEM_SCHEMA,
    ROWS,
    criteria,
    jsonl,
    make_eval,
    poll_run,
    start_run,
    upload,
)


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


# -- files ------------------------------------------------------------------------------------
def test_files_are_stored_as_sent_and_listed_as_the_client_pages(client: Any) -> None:
    data = jsonl(ROWS)
    created = upload(client, data)
    assert created.status_code == 200, created.text
    f = created.json()
    assert f["object"] == "file" and f["purpose"] == "evals" and f["status"] == "processed"
    assert f["filename"] == "upload" and f["bytes"] == len(data)
    assert client.get(f"{BASE}/files/{f['id']}", headers=AUTH).json() == f
    content = client.get(f"{BASE}/files/{f['id']}/content", headers=AUTH)
    assert content.content == data
    ids = [f["id"], *(upload(client, b"{}\n").json()["id"] for _ in range(2))]
    seen, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, "order": "asc"}
        if after:
            params["after"] = after
        page = client.get(f"{BASE}/files", headers=AUTH, params=params).json()
        seen += [x["id"] for x in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == ids
    gone = client.delete(f"{BASE}/files/{f['id']}", headers=AUTH).json()
    assert gone == {"object": "file", "id": f["id"], "deleted": True}
    err = _error(client.get(f"{BASE}/files/{f['id']}", headers=AUTH), 404)
    assert err["message"] == f"No such File object: {f['id']}"


def test_an_evals_file_must_be_json_lines_whatever_its_name_says(client: Any) -> None:
    r = upload(client, b'{"item": {}}\nnot json\n', name="data.jsonl")
    assert "line 2 is not JSON" in _error(r, 400)["message"]
    # A user_data file is taken as it is.
    assert upload(client, b"anything", purpose="user_data").status_code == 200
    assert _error(upload(client, b"{}", purpose="nope"), 400)["param"] == "purpose"


def test_a_form_without_boundary_or_file_is_a_400(client: Any) -> None:
    r = client.post(
        f"{BASE}/files",
        headers={**AUTH, "Content-Type": "multipart/form-data"},
        content=b"x",
    )
    assert "boundary" in _error(r, 400)["message"]
    r = client.post(f"{BASE}/files", headers=AUTH, files={"purpose": (None, "evals")})
    assert "no 'file' part" in _error(r, 400)["message"]


# -- evals ------------------------------------------------------------------------------------
def test_an_eval_answers_schema_and_criterion_ids(client: Any) -> None:
    e = make_eval(client, metadata={"team": "search"})
    assert e["object"] == "eval" and e["id"].startswith("eval_")
    assert e["data_source_config"] == {
        "type": "custom",
        "schema": {
            "type": "object",
            "properties": {"item": ITEM_SCHEMA},
            "required": ["item"],
        },
    }
    assert "item_schema" not in e["data_source_config"]
    uuid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert [
        re.fullmatch(f"(Exact|Fuzzy)-{uuid}", c["id"]) is not None for c in e["testing_criteria"]
    ] == [True, True]
    assert client.get(f"{BASE}/evals/{e['id']}", headers=AUTH).json() == e
    updated = client.post(f"{BASE}/evals/{e['id']}", headers=AUTH, json={"name": "renamed"}).json()
    assert updated["name"] == "renamed" and updated["metadata"] == {"team": "search"}


def test_eval_list_pages_with_after_and_always_says_has_more(client: Any) -> None:
    ids = [make_eval(client)["id"] for _ in range(5)]
    first = client.get(f"{BASE}/evals", headers=AUTH, params={"limit": 2}).json()
    assert first["has_more"] is True and [e["id"] for e in first["data"]] == ids[:2]
    rest = client.get(
        f"{BASE}/evals", headers=AUTH, params={"limit": 10, "after": first["last_id"]}
    ).json()
    assert [e["id"] for e in rest["data"]] == ids[2:] and rest["has_more"] is False
    desc = client.get(f"{BASE}/evals", headers=AUTH, params={"order": "desc"}).json()
    assert [e["id"] for e in desc["data"]] == ids[::-1]
    stale = client.get(f"{BASE}/evals", headers=AUTH, params={"after": "eval_gone"}).json()
    assert stale["data"] == [] and stale["has_more"] is False


def test_logs_configs_and_unserved_graders_are_400s_with_the_alternative(client: Any) -> None:
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={"data_source_config": {"type": "logs"}, "testing_criteria": criteria()},
    )
    err = _error(r, 400)
    assert "logs stored at OpenAI" in err["message"] and "file_id" in err["message"]
    bad = criteria()
    bad[1]["evaluation_metric"] = "rouge_9"
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={"data_source_config": {"type": "custom", "item_schema": {}}, "testing_criteria": bad},
    )
    assert _error(r, 400)["param"] == "testing_criteria[1].evaluation_metric"


def test_names_with_control_characters_are_refused(client: Any) -> None:
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={
            "name": "a\u202eb",
            "data_source_config": {"type": "custom", "item_schema": {}},
            "testing_criteria": criteria(),
        },
    )
    assert _error(r, 400)["param"] == "name"


# -- runs -------------------------------------------------------------------------------------
def test_a_jsonl_run_grades_every_row_and_lists_items_by_status(client: Any) -> None:
    e = make_eval(client)
    created = start_run(client, e["id"])
    assert created.status_code == 200, created.text
    run = created.json()
    assert run["status"] in ("queued", "in_progress", "completed")
    run = poll_run(client, e["id"], run["id"])
    assert run["status"] == "completed" and run["error"] is None
    assert run["result_counts"] == {"total": 3, "passed": 1, "failed": 2, "errored": 0}
    exact, fuzzy = (c["id"] for c in e["testing_criteria"])
    assert run["per_testing_criteria_results"] == [
        {"testing_criteria": exact, "passed": 1, "failed": 2},
        {"testing_criteria": fuzzy, "passed": 2, "failed": 1},
    ]
    assert run["per_model_usage"] == []
    assert f"{BASE}/evaldock/runs/{run['id']}/report?expires=" in run["report_url"]
    url = f"{BASE}/evals/{e['id']}/runs/{run['id']}/output_items"
    passed = client.get(url, headers=AUTH, params={"status": "pass"}).json()["data"]
    failed = client.get(url, headers=AUTH, params={"status": "fail"}).json()["data"]
    assert [i["datasource_item_id"] for i in passed] == [0]
    assert [i["datasource_item_id"] for i in failed] == [1, 2]
    item = failed[0]
    assert item["datasource_item"] == ROWS[1]["item"]
    assert [r["name"] for r in item["results"]] == [exact, fuzzy]
    assert [r["passed"] for r in item["results"]] == [False, True]
    assert item["sample"]["output"] == [{"role": "assistant", "content": "madrid"}]
    one = client.get(f"{url}/{item['id']}", headers=AUTH).json()
    assert one == item
    listed = client.get(
        f"{BASE}/evals/{e['id']}/runs", headers=AUTH, params={"status": "completed"}
    )
    assert [r["id"] for r in listed.json()["data"]] == [run["id"]]
    queued = client.get(f"{BASE}/evals/{e['id']}/runs", headers=AUTH, params={"status": "queued"})
    assert queued.json()["data"] == [] and queued.json()["has_more"] is False


def test_a_run_from_an_uploaded_file(client: Any) -> None:
    e = make_eval(client)
    f = upload(client, jsonl(ROWS)).json()
    r = client.post(
        f"{BASE}/evals/{e['id']}/runs",
        headers=AUTH,
        json={"data_source": {"type": "jsonl", "source": {"type": "file_id", "id": f["id"]}}},
    )
    assert r.status_code == 200, r.text
    assert poll_run(client, e["id"], r.json()["id"])["result_counts"]["total"] == 3


def test_rows_are_checked_against_the_schema_at_creation(client: Any) -> None:
    e = make_eval(client)
    rows = [ROWS[0], {"item": {"question": "q"}}]
    err = _error(start_run(client, e["id"], rows), 400)
    assert (
        err["message"].startswith("row 1:") and "'answer' is a required property" in err["message"]
    )
    err = _error(start_run(client, e["id"], [{"question": "q", "answer": "a"}]), 400)
    assert 'row 0 has no "item" object' in err["message"]
    f = upload(client, jsonl([ROWS[0], {"item": {"question": 3, "answer": "a"}}])).json()
    r = client.post(
        f"{BASE}/evals/{e['id']}/runs",
        headers=AUTH,
        json={"data_source": {"type": "jsonl", "source": {"type": "file_id", "id": f["id"]}}},
    )
    assert f"row 1 (line 2 of {f['id']})" in _error(r, 400)["message"]


def test_a_missing_template_variable_errors_that_row(client: Any) -> None:
    e = make_eval(client)
    run = start_run(client, e["id"], [{"item": {"question": "q", "answer": "a"}}]).json()
    run = poll_run(client, e["id"], run["id"])
    assert run["result_counts"] == {"total": 1, "passed": 0, "failed": 0, "errored": 1}
    url = f"{BASE}/evals/{e['id']}/runs/{run['id']}/output_items"
    item = client.get(url, headers=AUTH).json()["data"][0]
    assert item["sample"] is None and "sample.output_text" in item["results"][0]["error"]


def test_cancelling_a_finished_run_is_a_400_that_the_client_does_not_retry(client: Any) -> None:
    e = make_eval(client)
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    for path in (f"/{run['id']}/cancel", f"/{run['id']}"):
        err = _error(client.post(f"{BASE}/evals/{e['id']}/runs{path}", headers=AUTH), 400)
        assert "already completed" in err["message"]


def test_cancel_on_both_paths(make_client: Any) -> None:
    client = make_client(**{"control.key": CTRL_KEY})
    timing = client.put("/_evaldock/jobs/openai/timing", headers=CTRL, json={"mode": "hold"})
    assert timing.status_code == 200, timing.text
    e = make_eval(client)
    for suffix in ("/cancel", ""):
        run = start_run(client, e["id"]).json()
        assert run["status"] == "queued"
        r = client.post(f"{BASE}/evals/{e['id']}/runs/{run['id']}{suffix}", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "canceled" and r.json()["error"] is None
    listed = client.get(f"{BASE}/evals/{e['id']}/runs", headers=AUTH, params={"status": "canceled"})
    assert len(listed.json()["data"]) == 2


def test_deleting_runs_and_evals(client: Any) -> None:
    e = make_eval(client)
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    r = client.delete(f"{BASE}/evals/{e['id']}/runs/{run['id']}", headers=AUTH).json()
    assert r == {"object": "eval.run.deleted", "deleted": True, "run_id": run["id"]}
    _error(client.get(f"{BASE}/evals/{e['id']}/runs/{run['id']}", headers=AUTH), 404)
    start_run(client, e["id"])
    r = client.delete(f"{BASE}/evals/{e['id']}", headers=AUTH).json()
    assert r == {"object": "eval.deleted", "deleted": True, "eval_id": e["id"]}
    _error(client.get(f"{BASE}/evals/{e['id']}/runs", headers=AUTH), 404)


def test_the_report_as_json_csv_and_text(client: Any) -> None:
    e = make_eval(client)
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    url = f"{BASE}/evals/{e['id']}/runs/{run['id']}/report"
    report = client.get(url, headers=AUTH).json()
    assert [c["name"] for c in report["criteria"]] == ["Exact", "Fuzzy"]
    assert report["criteria"][1]["signature"].startswith("metric:fuzzy_match|lib:rapidfuzz-")
    csv = client.get(url, headers={**AUTH, "Accept": "text/csv"}).text
    assert csv.splitlines()[0] == "datasource_item_id,status,Exact,Fuzzy"
    text = client.get(url, headers={**AUTH, "Accept": "text/plain"})
    assert text.headers["content-type"].startswith("text/plain")


def _signed(run: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """report_url as (path under the test client, its query)."""
    parts = urlsplit(run["report_url"])
    return parts.path, dict(parse_qsl(parts.query))


def test_report_url_opens_without_the_key_in_every_format(client: Any) -> None:
    e = make_eval(client)
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    path, query = _signed(run)
    assert path == f"/openai/v1/evaldock/runs/{run['id']}/report"
    page = client.get(path, params=query)  # no Authorization header: a browser's request
    assert page.status_code == 200, page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert run["id"] in page.text and "<td>Exact</td>" in page.text
    assert f"/_evaldock/ui/runs/openai/{run['id']}" in page.text  # the operator's dashboard
    as_json = client.get(path, params={**query, "format": "json"}).json()
    assert as_json["run"]["id"] == run["id"] and as_json["criteria"][0]["passed"] == 1
    assert (
        as_json["items"]
        == client.get(f"{BASE}/evals/{e['id']}/runs/{run['id']}/report", headers=AUTH).json()[
            "items"
        ]
    )
    csv = client.get(path, params={**query, "format": "csv"})
    assert csv.text.splitlines()[0] == "datasource_item_id,status,Exact,Fuzzy"
    text = client.get(path, params={**query, "format": "text"})
    assert text.headers["content-type"].startswith("text/plain") and "| Exact" in text.text
    r = client.get(path, params={**query, "format": "pdf"})
    assert r.status_code == 400 and "error" in r.json(), r.text


def test_a_report_url_opens_its_run_only_and_expires(make_client: Any) -> None:
    client = make_client(**{"openai.report_url_seconds": 1})
    e = make_eval(client)
    first = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    second = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    path, query = _signed(first)
    other, _ = _signed(second)
    sig = query["signature"]
    # Its last digit changed (a signature ending in 0 once made "+ '0'" the same one).
    forged = sig[:-1] + ("1" if sig.endswith("0") else "0")
    for where, params in (
        (other, query),  # another run's link
        (path, {**query, "signature": forged}),
        (path, {"expires": query["expires"]}),
        (path, {**query, "expires": str(int(query["expires"]) + 3600)}),
    ):
        refused = client.get(where, params=params)
        assert refused.status_code == 403, refused.text
        err = refused.json()["error"]
        assert err["code"] == "invalid_report_url" and "not valid" in err["message"]
        assert "retrieve the run again" in err["message"]
    time.sleep(2.1)  # past its expiry: one second after the run was answered
    expired = client.get(path, params=query).json()["error"]
    assert "has expired" in expired["message"] and "retrieve the run again" in expired["message"]
    fresh = client.get(f"{BASE}/evals/{e['id']}/runs/{first['id']}", headers=AUTH).json()
    again, fresh_query = _signed(fresh)
    assert client.get(again, params=fresh_query).status_code == 200


def test_a_report_url_of_a_deleted_run_is_a_404(client: Any) -> None:
    e = make_eval(client)
    run = poll_run(client, e["id"], start_run(client, e["id"]).json()["id"])
    client.delete(f"{BASE}/evals/{e['id']}/runs/{run['id']}", headers=AUTH)
    path, query = _signed(run)
    r = client.get(path, params=query)
    assert r.status_code == 404 and run["id"] in r.json()["error"]["message"]


# -- graders API ------------------------------------------------------------------------------
MULTI = {
    "type": "multi",
    "name": "blend",
    "graders": {
        "exact": {
            "type": "string_check",
            "name": "exact",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "operation": "ilike",
        },
        "fuzzy": {
            "type": "text_similarity",
            "name": "fuzzy",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "calculate_output": "0.5 * exact + 0.5 * min(fuzzy, 1)",
}


def test_graders_run_and_validate(client: Any) -> None:
    r = client.post(
        f"{BASE}/fine_tuning/alpha/graders/run",
        headers=AUTH,
        json={"grader": MULTI, "model_sample": "PARIS", "item": {"answer": "paris"}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reward"] == 1.0 and body["sub_rewards"] == {"exact": 1.0, "fuzzy": 1.0}
    assert body["metadata"]["errors"]["invalid_variable_error"] is False
    missing = client.post(
        f"{BASE}/fine_tuning/alpha/graders/run",
        headers=AUTH,
        json={"grader": MULTI["graders"]["exact"], "model_sample": "x"},
    ).json()
    assert missing["reward"] == 0 and missing["metadata"]["errors"]["invalid_variable_error"]
    ok = client.post(
        f"{BASE}/fine_tuning/alpha/graders/validate", headers=AUTH, json={"grader": MULTI}
    )
    assert ok.json() == {"grader": MULTI}
    for formula in ("__import__('os')", "exact +", "2 ** 3", "nope(1)"):
        bad = {**MULTI, "calculate_output": formula}
        r = client.post(
            f"{BASE}/fine_tuning/alpha/graders/validate", headers=AUTH, json={"grader": bad}
        )
        assert _error(r, 400)["param"] == "grader.calculate_output"
    cosine = {**MULTI["graders"]["fuzzy"], "evaluation_metric": "cosine"}
    r = client.post(
        f"{BASE}/fine_tuning/alpha/graders/validate", headers=AUTH, json={"grader": cosine}
    )
    assert "only available in evals" in _error(r, 400)["message"]


# -- errors -----------------------------------------------------------------------------------
def test_errors_are_openais_envelope(client: Any) -> None:
    err = _error(client.get(f"{BASE}/evals", headers={"Authorization": "Bearer nope"}), 401)
    assert err["code"] == "invalid_api_key"
    assert _error(client.get(f"{BASE}/nothing", headers=AUTH), 404)["message"].startswith(
        "Invalid URL"
    )
    err = _error(client.get(f"{BASE}/evals/eval_x", headers=AUTH), 404)
    assert err["message"] == "No such Eval object: eval_x"
    assert _error(client.get(f"{BASE}/evals", headers=AUTH, params={"limit": 0}), 400)


def test_keys_are_tenants(make_client: Any) -> None:
    client = make_client(**{"auth.openai.keys": ["test", "other"]})
    e = make_eval(client)
    other = {"Authorization": "Bearer other"}
    assert client.get(f"{BASE}/evals/{e['id']}", headers=other).status_code == 404
    assert client.get(f"{BASE}/evals", headers=other).json()["data"] == []


def test_served_only_under_the_prefix(client: Any) -> None:
    # Spice keeps /v1/evals at the root; the OpenAI surface answers only under /openai.
    r = client.post("/v1/fine_tuning/alpha/graders/validate", headers=AUTH, json={})
    assert r.status_code == 404 and "error" not in r.text
