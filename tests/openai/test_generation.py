"""``completions`` and ``responses`` data sources: input_messages rendered per row,
generated through the judge engine (the deterministic mock here; the loopback
OpenAI-compatible fake in real mode), sampling parameters, usage per model, the sample in
output items; sources that read logs stored at OpenAI are 400s with the alternative."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI

from .helpers import AUTH, BASE, ITEM_SCHEMA, make_eval, poll_run, upload

ROWS = [
    {"item": {"question": "Capital of France?", "answer": "Paris"}},
    {"item": {"question": "Capital of Spain?", "answer": "Madrid"}},
]
ECHOES = {
    "type": "string_check",
    "name": "Echoes",
    "input": "{{sample.output_text}}",
    "reference": "{{item.question}}",
    "operation": "like",
}
TEMPLATE = {
    "type": "template",
    "template": [
        {"role": "developer", "content": "Answer in one word."},
        {"role": "user", "content": {"type": "input_text", "text": "Q: {{ item.question }}"}},
    ],
}


def _error(r: Any, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()["error"]
    return body


def _run(client: Any, eval_id: str, data_source: dict[str, Any]) -> Any:
    return client.post(
        f"{BASE}/evals/{eval_id}/runs", headers=AUTH, json={"data_source": data_source}
    )


def _items(client: Any, eval_id: str, run_id: str) -> list[dict[str, Any]]:
    url = f"{BASE}/evals/{eval_id}/runs/{run_id}/output_items"
    data: list[dict[str, Any]] = client.get(url, headers=AUTH, params={"limit": 100}).json()["data"]
    return data


def _completions(rows: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "completions",
        "model": "gpt-4o-mini",
        "source": {"type": "file_content", "content": rows if rows is not None else ROWS},
        "input_messages": TEMPLATE,
        **extra,
    }


def test_a_completions_run_generates_then_grades_each_row(client: Any) -> None:
    e = make_eval(client, testing_criteria=[ECHOES])
    params = {"temperature": 0.2, "top_p": 0.9, "seed": 7, "max_completions_tokens": 64}
    created = _run(client, e["id"], _completions(sampling_params=params))
    assert created.status_code == 200, created.text
    run = created.json()
    assert run["model"] == "gpt-4o-mini"
    assert run["data_source"]["sampling_params"] == params
    run = poll_run(client, e["id"], run["id"])
    assert run["status"] == "completed", run
    assert run["result_counts"] == {"total": 2, "passed": 2, "failed": 0, "errored": 0}
    (usage,) = run["per_model_usage"]
    assert usage["model_name"] == "gpt-4o-mini" and usage["invocation_count"] == 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    items = _items(client, e["id"], run["id"])
    sample = items[0]["sample"]
    assert sample["input"] == [
        {"role": "developer", "content": "Answer in one word."},
        {"role": "user", "content": "Q: Capital of France?"},
    ]
    (output,) = sample["output"]
    assert output["role"] == "assistant" and output["content"].endswith("Q: Capital of France?")
    assert sample["finish_reason"] == "stop" and sample["model"] == "gpt-4o-mini"
    assert sample["error"] is None
    assert (sample["temperature"], sample["top_p"], sample["seed"]) == (0.2, 0.9, 7)
    assert sample["max_completion_tokens"] == 64  # the docs' spelling, answered as the model's
    assert sample["usage"]["total_tokens"] > 0
    # The same run again: the mock is deterministic.
    again = poll_run(
        client, e["id"], _run(client, e["id"], _completions(sampling_params=params)).json()["id"]
    )
    assert _items(client, e["id"], again["id"])[0]["sample"]["output"] == sample["output"]


def test_sampling_params_change_the_generation_and_both_spellings_are_taken(client: Any) -> None:
    e = make_eval(client, testing_criteria=[ECHOES])
    outputs = []
    for params in ({"max_completion_tokens": 10}, {"max_completions_tokens": 10}, {"seed": 1}):
        run = poll_run(
            client,
            e["id"],
            _run(client, e["id"], _completions(sampling_params=params)).json()["id"],
        )
        outputs.append(_items(client, e["id"], run["id"])[0]["sample"]["output"][0]["content"])
    assert outputs[0] == outputs[1] != outputs[2]


def test_item_reference_nested_paths_and_a_responses_run_from_a_file(client: Any) -> None:
    schema = {"type": "object", "properties": {"chat": {"type": "object"}}}
    rows = [
        {
            "item": {
                "chat": {"turns": [{"role": "user", "content": "Tell me about Paris"}]},
                "answer": "Paris",
            }
        }
    ]
    e = make_eval(
        client,
        data_source_config={"type": "custom", "item_schema": schema},
        testing_criteria=[{**ECHOES, "reference": "{{item.chat.turns[0].content}}"}],
    )
    f = upload(client, b"".join(__import__("json").dumps(r).encode() + b"\n" for r in rows)).json()
    source = {
        "type": "responses",
        "model": "gpt-4o",
        "source": {"type": "file_id", "id": f["id"]},
        "input_messages": {"type": "item_reference", "item_reference": "item.chat.turns"},
    }
    run = poll_run(client, e["id"], _run(client, e["id"], source).json()["id"])
    assert run["result_counts"]["passed"] == 1, run
    assert run["per_model_usage"][0]["model_name"] == "gpt-4o"
    assert run["data_source"]["sampling_params"] is None


def test_a_row_without_a_templated_variable_is_errored_alone(client: Any) -> None:
    e = make_eval(
        client,
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[ECHOES],
    )
    rows = [ROWS[0], {"item": {"other": 1}}]
    run = poll_run(client, e["id"], _run(client, e["id"], _completions(rows)).json()["id"])
    assert run["result_counts"] == {"total": 2, "passed": 1, "failed": 0, "errored": 1}
    bad = _items(client, e["id"], run["id"])[1]
    assert "item.question" in bad["results"][0]["error"]
    assert bad["sample"]["error"]["code"] == "generation_error" and bad["sample"]["output"] == []
    assert run["per_model_usage"][0]["invocation_count"] == 1


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"model": "o9-preview"}, "data_source.model", "[judge.models]"),
        ({"input_messages": None}, "data_source.input_messages", "required"),
        (
            {
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "user", "content": "{{sample.output_text}}"}],
                }
            },
            "data_source.input_messages.template[0]",
            "only item variables",
        ),
        (
            {
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "robot", "content": "x"}],
                }
            },
            "data_source.input_messages.template[0]",
            "role",
        ),
        (
            {
                "input_messages": {
                    "type": "template",
                    "template": [
                        {"role": "user", "content": {"type": "input_image", "image_url": "x"}}
                    ],
                }
            },
            "data_source.input_messages.template[0]",
            "only text",
        ),
        (
            {"sampling_params": {"temperature": 3}},
            "data_source.sampling_params.temperature",
            "0 to 2",
        ),
        (
            {"sampling_params": {"max_completion_tokens": 5, "max_completions_tokens": 6}},
            "data_source.sampling_params.max_completion_tokens",
            "different values",
        ),
        (
            {"sampling_params": {"max_completions_tokens": 0}},
            "data_source.sampling_params.max_completions_tokens",
            "1 to",
        ),
    ],
)
def test_generation_requests_the_run_cannot_do_are_400s(
    client: Any, change: dict[str, Any], param: str, words: str
) -> None:
    e = make_eval(client, testing_criteria=[ECHOES])
    source = {k: v for k, v in {**_completions(), **change}.items() if v is not None}
    err = _error(_run(client, e["id"], source))
    assert err["param"] == param and words in err["message"], err


@pytest.mark.parametrize(
    "source",
    [
        {"type": "stored_completions", "model": "gpt-4o", "limit": 10},
        {"type": "responses", "instructions_search": "weather", "created_after": 0},
    ],
)
@pytest.mark.parametrize("kind", ["completions", "responses"])
def test_sources_reading_logs_at_openai_are_400s_with_the_file_alternative(
    client: Any, source: dict[str, Any], kind: str
) -> None:
    e = make_eval(client, testing_criteria=[ECHOES])
    err = _error(_run(client, e["id"], {**_completions(), "type": kind, "source": source}))
    assert err["param"] == "data_source.source.type"
    assert "logs stored at OpenAI" in err["message"]
    assert "files.create(purpose='evals')" in err["message"] and '"file_id"' in err["message"]


def test_a_completions_run_on_a_served_model(make_client: Any) -> None:
    """--mode real: the samples come from the loopback OpenAI-compatible fake, with the
    run's sampling parameters on the wire."""
    with FakeOpenAI() as fake:
        client = make_client(
            **{
                "server.mode": "real",
                "server.surfaces": ["openai"],
                "judge.urls": [fake.url],
                "judge.model": "fake-model",
                "engines.embedder.impl": "mock",
            }
        )
        e = make_eval(client, testing_criteria=[ECHOES])
        params = {"temperature": 0.5, "seed": 3, "max_completions_tokens": 32}
        source = _completions(sampling_params=params, model="fake-model")
        run = poll_run(client, e["id"], _run(client, e["id"], source).json()["id"])
        sent = [r for r in fake.requests if not r.get("response_format")]
    assert run["status"] == "completed", run
    assert run["result_counts"]["passed"] == 2
    assert run["per_model_usage"] == [
        {
            "model_name": "fake-model",
            "invocation_count": 2,
            "prompt_tokens": 22,
            "completion_tokens": 14,
            "total_tokens": 36,
            "cached_tokens": 0,
        }
    ]
    assert len(sent) == 2
    for body in sent:
        assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.5, 3, 32)
        assert body["messages"][0] == {"role": "system", "content": "Answer in one word."}
    item = _items(client, e["id"], run["id"])[0]
    assert item["sample"]["output"][0]["content"] == "echo: Q: Capital of France?"
    assert item["sample"]["usage"]["prompt_tokens"] == 11


def test_an_unknown_item_schema_key_is_still_checked_before_generating(client: Any) -> None:
    e = make_eval(client, testing_criteria=[ECHOES])
    err = _error(_run(client, e["id"], _completions([{"item": {"question": 1}}])))
    assert err["message"].startswith("row 0:")
    assert ITEM_SCHEMA["required"] == ["question", "answer"]


def test_cancelling_a_run_while_it_generates(make_client: Any) -> None:
    # Each mock generation takes 300 ms: the run is still generating when cancelled.
    client = make_client(**{"judge.delay_ms": 300, "openai.concurrency": 1})
    e = make_eval(client, testing_criteria=[ECHOES])
    rows = [{"item": {"question": f"q{i}", "answer": "a"}} for i in range(50)]
    run = _run(client, e["id"], _completions(rows)).json()
    deadline = time.monotonic() + 30
    while run["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
        run = client.get(f"{BASE}/evals/{e['id']}/runs/{run['id']}", headers=AUTH).json()
    assert run["status"] == "in_progress", run
    r = client.post(f"{BASE}/evals/{e['id']}/runs/{run['id']}/cancel", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled"
    assert _items(client, e["id"], run["id"]) == []


FINISHED = {
    "type": "string_check",
    "name": "Finished",
    "input": "{{sample.choices[0].finish_reason}}",
    "reference": "stop",
    "operation": "eq",
}


def test_an_answer_cut_at_the_token_limit_says_length(client: Any) -> None:
    """The mock counts a word a token: three words of its answer, then finish_reason
    length, in the sample and in ``{{sample.choices[0].finish_reason}}``."""
    e = make_eval(client, testing_criteria=[FINISHED])
    for limit, finish in ((3, "length"), (64, "stop")):
        params = {"max_completions_tokens": limit}
        source = _completions(ROWS[:1], sampling_params=params)
        run = poll_run(client, e["id"], _run(client, e["id"], source).json()["id"])
        (item,) = _items(client, e["id"], run["id"])
        sample = item["sample"]
        assert sample["finish_reason"] == finish, sample
        assert item["results"][0]["passed"] is (finish == "stop")
        if finish == "length":
            assert len(sample["output"][0]["content"].split()) == 3


def test_a_served_models_finish_reason_reaches_the_sample(make_client: Any) -> None:
    with FakeOpenAI() as fake:
        client = make_client(
            **{
                "server.mode": "real",
                "server.surfaces": ["openai"],
                "judge.urls": [fake.url],
                "judge.model": "fake-model",
                "engines.embedder.impl": "mock",
            }
        )
        e = make_eval(client, testing_criteria=[FINISHED])
        fake.script.append("cut:Par")
        source = _completions(ROWS[:1], model="fake-model")
        run = poll_run(client, e["id"], _run(client, e["id"], source).json()["id"])
    (item,) = _items(client, e["id"], run["id"])
    assert item["sample"]["finish_reason"] == "length"
    assert item["sample"]["output"][0]["content"] == "Par"
    assert item["results"][0]["passed"] is False
