"""Shared bodies and polling for the OpenAI surface's tests."""

from __future__ import annotations

import json
import time
from typing import Any

AUTH = {"Authorization": "Bearer test"}
BASE = "/openai/v1"
CTRL_KEY = "ctl"
CTRL = {"X-Evaldock-Control-Key": CTRL_KEY}

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}


def criteria() -> list[dict[str, Any]]:
    return [
        {
            "type": "string_check",
            "name": "Exact",
            "input": "{{sample.output_text}}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
        {
            "type": "text_similarity",
            "name": "Fuzzy",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.8,
        },
    ]


def eval_body(**extra: Any) -> dict[str, Any]:
    return {
        "name": "capitals",
        "data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA},
        "testing_criteria": criteria(),
        **extra,
    }


ROWS = [
    {
        "item": {"question": "Capital of France?", "answer": "Paris"},
        "sample": {"output_text": "Paris"},
    },
    {
        "item": {"question": "Capital of Spain?", "answer": "Madrid"},
        "sample": {"output_text": "madrid"},
    },
    {
        "item": {"question": "Capital of Italy?", "answer": "Rome"},
        "sample": {"output_text": "Milan"},
    },
]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def upload(client: Any, data: bytes, purpose: str = "evals", name: str = "upload") -> Any:
    return client.post(
        f"{BASE}/files",
        headers=AUTH,
        files={"file": (name, data, "application/octet-stream")},
        data={"purpose": purpose},
    )


def make_eval(client: Any, **extra: Any) -> dict[str, Any]:
    r = client.post(f"{BASE}/evals", headers=AUTH, json=eval_body(**extra))
    assert r.status_code == 200, r.text
    return dict(r.json())


def start_run(client: Any, eval_id: str, rows: list[dict[str, Any]] | None = None) -> Any:
    source = {"type": "file_content", "content": rows if rows is not None else ROWS}
    return client.post(
        f"{BASE}/evals/{eval_id}/runs",
        headers=AUTH,
        json={"name": "r", "data_source": {"type": "jsonl", "source": source}},
    )


def poll_run(client: Any, eval_id: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(
            f"{BASE}/evals/{eval_id}/runs/{run_id}", headers=AUTH
        ).json()
        if run["status"] not in ("queued", "in_progress"):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run still {run['status']} after {timeout}s")
        time.sleep(0.05)
