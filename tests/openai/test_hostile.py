"""Hostile input gets a clear 4xx in OpenAI's envelope, never a 5xx: deep JSON in a row,
a 70+ character multipart boundary, one 100 MB line, nested and self-referring templates,
a formula of 1,000 nested parentheses, names with control characters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .helpers import AUTH, BASE, ROWS, criteria, make_eval, poll_run, start_run, upload


def _error(r: Any, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text[:500]
    body: dict[str, Any] = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_deep_json_in_a_jsonl_row_is_a_400(client: Any) -> None:
    deep = b'{"item": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    err = _error(upload(client, deep))
    assert "line 1 nests deeper" in err["message"]
    # Just under the decoder's bound: stored, then refused by the run's schema check.
    e = make_eval(client)
    row = {"item": {"question": "q", "answer": json.loads("[" * 900 + "]" * 900)}}
    f = upload(client, json.dumps(row).encode() + b"\n")
    assert f.status_code == 200, f.text
    r = client.post(
        f"{BASE}/evals/{e['id']}/runs",
        headers=AUTH,
        json={
            "data_source": {"type": "jsonl", "source": {"type": "file_id", "id": f.json()["id"]}}
        },
    )
    assert "does not match the eval's item_schema" in _error(r)["message"]


def test_deep_json_in_a_request_body_is_a_400(client: Any) -> None:
    body = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = client.post(
        f"{BASE}/evals", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    _error(r)


def test_a_multipart_boundary_over_70_characters_is_a_400(client: Any) -> None:
    boundary = "b" * 71
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nevals\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        f"{{}}\r\n--{boundary}--\r\n"
    ).encode()
    r = client.post(
        f"{BASE}/files",
        content=body,
        headers={**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "RFC 2046 allows at most 70" in _error(r)["message"]


def test_one_100_mb_line_is_over_the_row_limit(client: Any) -> None:
    line = b'{"item": {"text": "' + b"a" * (100 * 1024 * 1024) + b'"}}\n'
    err = _error(upload(client, line))
    assert "line 1 is over 16 MB" in err["message"]
    assert client.get(f"{BASE}/files", headers=AUTH).json()["data"] == []


@pytest.mark.parametrize(
    "template",
    ["{{item.{{item.answer}}}}", "{{ {{item.answer}} }}", "{{item.answer", "{{__import__}}"],
)
def test_nested_templates_are_refused(client: Any, template: str) -> None:
    bad = criteria()
    bad[0]["reference"] = template
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={
            "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
            "testing_criteria": bad,
        },
    )
    if template == "{{item.answer":  # not a variable at all: compared as it is
        assert r.status_code == 200, r.text
        return
    assert _error(r)["param"] == "testing_criteria[0].reference"


def test_a_value_that_looks_like_a_template_is_not_rendered_again(client: Any) -> None:
    e = make_eval(client)
    rows = [{"item": {"question": "{{item.answer}}", "answer": "{{item.question}}"},
             "sample": {"output_text": "{{item.question}}"}}]  # fmt: skip
    run = poll_run(client, e["id"], start_run(client, e["id"], rows).json()["id"])
    assert run["result_counts"]["passed"] == 1  # compared literally, no recursion


@pytest.mark.parametrize(
    "formula", ["(" * 1000 + "a" + ")" * 1000, "(" * 400 + "a" + ")" * 400, "-" * 999 + "a"]
)
def test_a_formula_of_deep_parentheses_is_a_400(client: Any, formula: str) -> None:
    multi = {
        "type": "multi",
        "name": "m",
        "graders": {"a": criteria()[0]},
        "calculate_output": formula,
    }
    for op in ("validate", "run"):
        body: dict[str, Any] = {"grader": multi, "model_sample": "x", "item": {}}
        r = client.post(f"{BASE}/fine_tuning/alpha/graders/{op}", headers=AUTH, json=body)
        err = _error(r)
        assert err["param"] == "grader.calculate_output"
        assert "at most 1000" in err["message"] or "nests deeper" in err["message"]


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "bidi\u202eevil", "line\u2028sep"])
def test_names_with_control_characters_are_400s(client: Any, name: str) -> None:
    body = {
        "name": name,
        "data_source_config": {"type": "custom", "item_schema": {}},
        "testing_criteria": criteria(),
    }
    assert _error(client.post(f"{BASE}/evals", headers=AUTH, json=body))["param"] == "name"
    bad = criteria()
    bad[1]["name"] = name
    body = {**body, "name": "ok", "testing_criteria": bad}
    err = _error(client.post(f"{BASE}/evals", headers=AUTH, json=body))
    assert err["param"] == "testing_criteria[1].name"
    e = make_eval(client)
    r = client.post(
        f"{BASE}/evals/{e['id']}/runs",
        headers=AUTH,
        json={"name": name, "data_source": {"type": "jsonl", "source": {
            "type": "file_content", "content": ROWS}}},
    )  # fmt: skip
    assert _error(r)["param"] == "name"
    # Raw, as a client that does not percent-encode controls in filenames sends it.
    boundary = "x" * 32
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nevals\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"\r\n{{}}\r\n--{boundary}--\r\n"
    ).encode()
    r = client.post(
        f"{BASE}/files",
        content=body,
        headers={**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert _error(r)["param"] == "file"
    r = client.post(f"{BASE}/evals/{e['id']}", headers=AUTH, json={"name": name})
    assert _error(r)["param"] == "name"
