"""``score_model`` and ``label_model`` graders through the judge engine: the grader's own
messages rendered with ``item`` and ``sample``, the answer clamped into ``range`` or mapped
to a label; the loopback OpenAI-compatible fake answering in and out of range, and
without a number."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI

from .helpers import AUTH, BASE, make_eval, poll_run, start_run

SCORE = {
    "type": "score_model",
    "name": "Judge",
    "model": "gpt-4o-mini",
    "input": [
        {"role": "system", "content": "Grade the answer from 0 to 1."},
        {
            "role": "user",
            "content": "Question: {{item.question}} Reference: {{ item.answer }} "
            "Answer: {{sample.output_text}}",
        },
    ],
    "range": [0, 1],
    "pass_threshold": 0.5,
}
LABEL = {
    "type": "label_model",
    "name": "Sentiment",
    "model": "gpt-4o-mini",
    "input": [
        {"role": "user", "content": "Is '{{sample.output_text}}' right for {{item.question}}?"}
    ],
    "labels": ["right", "wrong"],
    "passing_labels": ["right"],
}


def _items(client: Any, e: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"{BASE}/evals/{e['id']}/runs/{run['id']}/output_items"
    data: list[dict[str, Any]] = client.get(url, headers=AUTH).json()["data"]
    return data


def _row(n: int) -> list[dict[str, Any]]:
    """A row of its own (the judge caches answers by request: a new row, a new question)."""
    return [
        {
            "item": {"question": f"Question {n}?", "answer": "Paris"},
            "sample": {"output_text": "Paris"},
        }
    ]


def _real(make_client: Any, fake: FakeOpenAI) -> Any:
    return make_client(
        **{
            "server.mode": "real",
            "server.surfaces": ["openai"],
            "judge.urls": [fake.url],
            "judge.model": "fake-model",
            "judge.models": {"gpt-4o-mini": "fake-model"},
            "engines.embedder.impl": "mock",
        }
    )


def test_model_graders_in_mock_mode_are_deterministic(client: Any) -> None:
    e = make_eval(client, testing_criteria=[SCORE, LABEL])
    runs = [poll_run(client, e["id"], start_run(client, e["id"]).json()["id"]) for _ in "ab"]
    assert runs[0]["status"] == "completed", runs[0]
    assert runs[0]["result_counts"]["errored"] == 0
    first, second = (_items(client, e, r) for r in runs)
    assert [i["results"] for i in first] == [i["results"] for i in second]
    score, label = first[0]["results"]
    assert 0 <= score["score"] <= 1 and score["type"] == "score_model"
    # The mock label_model picks the label the messages name most: "right" (the grader's
    # question says it, the list of labels names both once).
    assert label["label"] == "right" and label["passed"] is True and label["score"] == 1.0
    assert score["sample"]["input"][1]["content"] == (
        "Question: Capital of France? Reference: Paris Answer: Paris"
    )
    assert {u["model_name"] for u in runs[0]["per_model_usage"]} == {"gpt-4o-mini"}
    assert runs[0]["per_model_usage"][0]["invocation_count"] == 6


def test_score_model_on_a_served_model_clamps_and_zeroes(make_client: Any) -> None:
    step = {"description": "compared with the reference", "conclusion": "same city"}
    scripts = (
        [],  # the fake's own answer: result 0.75, no steps
        ['json:{"steps": [], "result": 7}'],  # above the range: clamped to 1
        [f'json:{{"steps": [{json.dumps(step)}], "result": -3}}'],  # below: clamped to 0
        ['json:{"steps": []}'] * 3,  # no result after every retry
        ['json:{"steps": [], "result": "high"}'] * 3,  # not a number after every retry
    )
    with FakeOpenAI() as fake:
        client = _real(make_client, fake)
        e = make_eval(client, testing_criteria=[SCORE])
        results = []
        for n, script in enumerate(scripts):
            fake.script.extend(script)
            run = poll_run(client, e["id"], start_run(client, e["id"], _row(n)).json()["id"])
            assert run["status"] == "completed", run
            (item,) = _items(client, e, run)
            results.append((item["results"][0], run["result_counts"]))
        asked = [r for r in fake.requests if r.get("response_format")]
    assert [r["score"] for r, _ in results] == [0.75, 1.0, 0.0, 0.0, 0.0]
    assert [r["passed"] for r, _ in results] == [True, True, False, False, False]
    assert [r.get("result") for r, _ in results[:3]] == [0.75, 7, -3]
    assert results[2][0]["steps"] == [step] and results[0][0]["steps"] == []
    assert "error" not in results[1][0]
    for errored, counts in results[3:]:
        assert "model_grader_parse_error" in errored["error"], errored
        assert "does not match the schema" in errored["error"]
        assert counts == {"total": 1, "passed": 0, "failed": 0, "errored": 1}
    # OpenAI's answer shape, as a JSON schema the served model decodes with.
    sent = asked[0]["response_format"]["json_schema"]["schema"]
    assert sent["required"] == ["steps", "result"]
    assert sent["properties"]["result"] == {"type": "number"}
    prompt = json.dumps(asked[0]["messages"])
    assert (
        "Question 0? Reference: Paris Answer: Paris" in prompt and asked[0]["model"] == "fake-model"
    )
    assert "a number from 0 to 1" in asked[0]["messages"][-1]["content"]
    first = results[0][0]["sample"]
    assert first["usage"]["total_tokens"] == 18 and first["finish_reason"] == "stop"
    assert json.loads(first["output"][0]["content"]) == {"steps": [], "result": 0.75}


def test_label_model_on_a_served_model(make_client: Any) -> None:
    scripts = (
        ['json:{"label": "right"}'],
        ['json:{"label": "wrong"}'],
        ['json:{"label": "maybe"}'] * 3,  # no label of the grader's after every retry
    )
    with FakeOpenAI() as fake:
        client = _real(make_client, fake)
        e = make_eval(client, testing_criteria=[LABEL])
        got = []
        for n, script in enumerate(scripts):
            fake.script.extend(script)
            run = poll_run(client, e["id"], start_run(client, e["id"], _row(n)).json()["id"])
            got.append(_items(client, e, run)[0]["results"][0])
        asked = [r for r in fake.requests if r.get("response_format")]
    assert [(r.get("label"), r["passed"], r["score"]) for r in got] == [
        ("right", True, 1.0),
        ("wrong", False, 0.0),
        (None, False, 0.0),
    ]
    assert "'maybe' is not one of ['right', 'wrong']" in got[2]["error"]
    sent = asked[0]["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["label"] == {"type": "string", "enum": ["right", "wrong"]}
    assert '\\"right\\", \\"wrong\\"' in json.dumps(asked[0]["messages"])


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"model": "o9"}, "testing_criteria[0].model", "[judge.models]"),
        ({"range": [1, 0]}, "testing_criteria[0].range", "low < high"),
        ({"input": []}, "testing_criteria[0].input", "non-empty"),
        (
            {"input": [{"role": "user", "content": "{{nope.x}}"}]},
            "testing_criteria[0].input[0]",
            "item.<path> or sample.<path>",
        ),
    ],
)
def test_model_graders_the_judge_cannot_answer_are_400s(
    client: Any, change: dict[str, Any], param: str, words: str
) -> None:
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={
            "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
            "testing_criteria": [{**SCORE, **change}],
        },
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err


def test_label_model_needs_passing_labels_among_its_labels(client: Any) -> None:
    r = client.post(
        f"{BASE}/evals",
        headers=AUTH,
        json={
            "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
            "testing_criteria": [{**LABEL, "passing_labels": ["maybe"]}],
        },
    )
    assert r.json()["error"]["param"] == "testing_criteria[0].passing_labels"


def test_graders_run_with_a_score_model_counts_its_tokens(client: Any) -> None:
    grader = {**SCORE, "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}]}
    r = client.post(
        f"{BASE}/fine_tuning/alpha/graders/run",
        headers=AUTH,
        json={"grader": grader, "model_sample": "Rate Paris", "item": {}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0 <= body["reward"] <= 1
    assert body["metadata"]["errors"]["model_grader_parse_error"] is False
    assert list(body["model_grader_token_usage_per_model"]) == ["gpt-4o-mini"]
    multi = {
        "type": "multi",
        "name": "m",
        "graders": {"judge": grader, "label": LABEL},
        "calculate_output": "judge + label",
    }
    r = client.post(
        f"{BASE}/fine_tuning/alpha/graders/run",
        headers=AUTH,
        json={"grader": multi, "model_sample": "x", "item": {"question": "q"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["sub_rewards"]["label"] == 1.0
