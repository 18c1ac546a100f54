"""The official ``openai`` client (3.57.0), unchanged, against a live evaldock: run in the
clients' own environment by test_e2e.py as ``python openai_walk.py <server url> <control key>``;
prints one JSON object of what it saw."""

from __future__ import annotations

import json
import sys
import time
import urllib.request

import httpx
from openai import BadRequestError, NotFoundError, OpenAI

url, control_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=f"{url}/openai/v1", api_key="test", max_retries=0)
out: dict = {}

rows = [
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
data = "".join(json.dumps(r) + "\n" for r in rows).encode()
f = client.files.create(file=data, purpose="evals")  # sent as 'upload', octet-stream
out["file"] = {"filename": f.filename, "bytes": f.bytes, "status": f.status}
out["content"] = client.files.content(f.id).read() == data

sim = {"type": "text_similarity", "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
ev = client.evals.create(
    name="capitals",
    data_source_config={
        "type": "custom",
        "item_schema": {
            "type": "object",
            "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
            "required": ["question", "answer"],
        },
        "include_sample_schema": True,
    },
    testing_criteria=[
        {
            "type": "string_check",
            "name": "Exact",
            "input": "{{sample.output_text}}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        },
        {**sim, "name": "Fuzzy", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.8},
        {**sim, "name": "BLEU", "evaluation_metric": "bleu", "pass_threshold": 0.5},
        {**sim, "name": "Cosine", "evaluation_metric": "cosine", "pass_threshold": 0.5},
    ],
)
out["criteria"] = [c.id.rsplit("-", 5)[0] for c in ev.testing_criteria]
out["schema_keys"] = sorted(ev.data_source_config.schema_["properties"])

run = client.evals.runs.create(
    ev.id, name="walk", data_source={"type": "jsonl", "source": {"type": "file_id", "id": f.id}}
)
out["created_status"] = run.status
deadline = time.monotonic() + 60
while run.status in ("queued", "in_progress") and time.monotonic() < deadline:
    time.sleep(0.1)
    run = client.evals.runs.retrieve(run.id, eval_id=ev.id)
out["run"] = {
    "status": run.status,
    "result_counts": run.result_counts.model_dump(),
    "per_criteria": [
        (r.testing_criteria.rsplit("-", 5)[0], r.passed, r.failed)
        for r in run.per_testing_criteria_results
    ],
}
passed = client.evals.runs.output_items.list(run.id, eval_id=ev.id, status="pass")
failed = client.evals.runs.output_items.list(run.id, eval_id=ev.id, status="fail", limit=1)
out["pass_ids"] = [i.datasource_item_id for i in passed]
out["fail_ids"] = [i.datasource_item_id for i in failed]  # pages through limit=1
one = client.evals.runs.output_items.retrieve(failed.data[0].id, eval_id=ev.id, run_id=run.id)
out["item_sample"] = one.sample.output[0].content
# report_url opens without the key, as a browser would: an HTML page of the run.
page = httpx.get(run.report_url)
out["report"] = (
    f"/evaldock/runs/{run.id}/report?" in run.report_url
    and page.status_code == 200
    and page.headers["content-type"].startswith("text/html")
    and run.id in page.text
)
out["listed_runs"] = [r.id == run.id for r in client.evals.runs.list(ev.id, status="completed")]


# A completions run (mock mode: the deterministic mock judge generates), templated per
# row, with the docs' spelling of the token limit.
gen = client.evals.runs.create(
    ev.id,
    name="generated",
    data_source={
        "type": "completions",
        "model": "gpt-4o-mini",
        "source": {"type": "file_content", "content": [{"item": r["item"]} for r in rows]},
        "input_messages": {
            "type": "template",
            "template": [
                {"role": "developer", "content": "Answer with the capital only."},
                {"role": "user", "content": "{{ item.question }}"},
            ],
        },
        "sampling_params": {"temperature": 0.0, "seed": 42, "max_completions_tokens": 16},
    },
)
deadline = time.monotonic() + 60
while gen.status in ("queued", "in_progress") and time.monotonic() < deadline:
    time.sleep(0.1)
    gen = client.evals.runs.retrieve(gen.id, eval_id=ev.id)
gen_items = list(client.evals.runs.output_items.list(gen.id, eval_id=ev.id))
out["generated"] = {
    "status": gen.status,
    "model": gen.model,
    "total": gen.result_counts.total,
    "usage": [(u.run_model_name, u.invocation_count) for u in gen.per_model_usage],
    "input": [m.content for m in gen_items[0].sample.input],
    "echoes": all(
        i.sample.output[0].content.endswith(i.datasource_item["question"]) for i in gen_items
    ),
    "max_tokens": gen_items[0].sample.max_completion_tokens,
    "finish": gen_items[0].sample.finish_reason,
}

try:
    client.evals.runs.cancel(run.id, eval_id=ev.id)
except BadRequestError as exc:
    out["cancel_finished"] = [exc.status_code, "already completed" in exc.message]

# Hold new jobs (the control plane) so two runs stay queued, then cancel one on each path.
request = urllib.request.Request(
    f"{url}/_evaldock/jobs/openai/timing",
    data=json.dumps({"mode": "hold"}).encode(),
    method="PUT",
    headers={"Content-Type": "application/json", "X-Evaldock-Control-Key": control_key},
)
urllib.request.urlopen(request).read()
content = {"type": "file_content", "content": rows}
held = [
    client.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": content}) for _ in "ab"
]
new_path = client.evals.runs.cancel(held[0].id, eval_id=ev.id)  # POST .../cancel
old_path = client.post(  # POST .../runs/{id}: clients up to 3.22.1
    f"/evals/{ev.id}/runs/{held[1].id}", cast_to=type(new_path), body=None
)
out["canceled"] = [new_path.status, old_path.status]

out["grader_run"] = client.fine_tuning.alpha.graders.run(
    grader={
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
            "bleu": {**sim, "name": "bleu", "evaluation_metric": "bleu"},
        },
        "calculate_output": "0.5 * exact + 0.5 * bleu",
    },
    model_sample="PARIS",
    item={"answer": "Paris"},
).reward
valid = client.fine_tuning.alpha.graders.validate(
    grader={**sim, "name": "g", "evaluation_metric": "rouge_l"}
)
out["validated"] = valid.grader.type
try:
    client.fine_tuning.alpha.graders.validate(
        grader={**sim, "name": "g", "evaluation_metric": "cosine"}
    )
except BadRequestError as exc:
    out["validate_refused"] = exc.status_code

out["deleted"] = client.evals.delete(ev.id).deleted
try:
    client.evals.retrieve(ev.id)
except NotFoundError as exc:
    out["after_delete"] = exc.status_code
out["evals_left"] = [e.id for e in client.evals.list()]
print(json.dumps(out))
