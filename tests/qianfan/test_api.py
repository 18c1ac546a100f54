# ruff: noqa: RUF001 - full-width punctuation is the test data
"""The Qianfan v1 evaluation API in-process (and over HTTP with EVALDOCK_TEST_SERVER=1):
signed calls through the whole task life, envelopes, business errors, datasets."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.engines.text_metrics_reference import KEYS, ReferenceMetrics, generate_pairs

from .helpers import (
    DATASET,
    EVAL,
    add_dataset,
    call,
    create_eval,
    host_of,
    ok,
    signed_headers,
    wait_export,
    wait_state,
)

pytest.importorskip("rouge_chinese", reason="pip install rouge-chinese==1.0.3 (test extra)")

CASES = [
    {"prompt": "中国的首都是哪里？", "reference": "北京", "prediction": "中国的首都是北京。"},
    {"prompt": "What is 2+2?", "reference": "4", "prediction": "The answer is 4"},
    {"prompt": "Name a colour", "reference": "red", "prediction": "blue"},
]


def _mixed_cases(n: int) -> list[dict[str, str]]:
    pairs = generate_pairs(n, "zh", seed=3) + generate_pairs(n, "en", seed=4)
    return [{"prompt": f"q{i}", "reference": r, "prediction": p} for i, (p, r) in enumerate(pairs)]


def test_task_life_with_predictions_matches_reference(client: Any, tmp_path: Path) -> None:
    cases = CASES + _mixed_cases(10)
    dataset_id = add_dataset(client, cases)
    created = create_eval(client, dataset_id, versions=2)
    assert isinstance(created["evalId"], int) and created["evalIdStr"].startswith("ame-")
    detail = wait_state(client, created["evalIdStr"])
    assert detail["state"] == "Done"
    assert detail["evalIdStr"] == created["evalIdStr"]
    # The int id and the ame- string name the same task.
    report = ok(client, f"{EVAL}/report", {"id": created["evalId"]})
    again = ok(client, f"{EVAL}/report", {"id": created["evalIdStr"]})
    assert [e["effectMetric"] for e in again] == [e["effectMetric"] for e in report]
    assert len(report) == 2
    reference = ReferenceMetrics(tmp_path / "jieba")
    per_case = [reference.per_case(c["prediction"], c["reference"]) for c in cases]
    expected = reference.mean(per_case)
    for entry in report:
        effect = entry["effectMetric"]
        for key in KEYS:
            assert effect[key] == pytest.approx(expected[key], abs=1e-9), key
        assert effect["scoreDistribution"] is None
        assert effect["manualScoreDistribution"] is None
        assert effect["subjectiveImpression"] == ""
        assert effect["avgJudgeScore"] == 0 and effect["goodCaseProportion"] == 0
        assert entry["performanceMetric"] == {}
        assert entry["modelForm"] == "inferDataset"
        assert entry["evaluationIdStr"] == created["evalIdStr"]
        assert entry["evaluationId"] == created["evalId"]
        assert isinstance(entry["modelId"], int) and isinstance(entry["modelVersionId"], int)
        assert entry["evalUnitId"].startswith("ameu-")
        assert entry["metricsSignature"].startswith("metrics:text-rules.")
    # Per-case results: paged, filtered, ordered.
    page = ok(client, f"{EVAL}/result/list", {"id": created["evalId"], "pageNo": 1, "pageSize": 5})
    assert page["totalCount"] == 2 * len(cases) and len(page["items"]) == 5
    first = page["items"][0]
    assert first["prompt"] == cases[0]["prompt"] and first["reference"] == "北京"
    assert first["metrics"]["accuracy"] == 1.0
    high = ok(
        client,
        f"{EVAL}/result/list",
        {
            "id": created["evalId"],
            "pageSize": 100,
            "bleu4": {"start": 0.5, "end": 1.0},
            "orderBy": "bleu4",
            "order": "desc",
        },
    )
    scores = [i["metrics"]["bleu4"] for i in high["items"]]
    assert scores == sorted(scores, reverse=True) and all(s >= 0.5 for s in scores)
    unit = report[1]["evalUnitId"]
    only = ok(client, f"{EVAL}/result/list", {"id": created["evalId"], "evalUnitId": [unit]})
    assert {i["evalUnitId"] for i in only["items"]} == {unit}


def test_export_zip_holds_one_array_per_case(client: Any) -> None:
    dataset_id = add_dataset(client, CASES)
    created = create_eval(client, dataset_id, versions=2)
    wait_state(client, created["evalId"])
    export = ok(client, f"{EVAL}/result/export", {"id": created["evalIdStr"]})
    assert export["exportIDStr"].startswith("amemt-")
    info = wait_export(client, export["exportIDStr"])
    assert info["state"] == "Done"
    # A capability URL: fetched without a signature.
    got = client.get(info["downloadUrl"])
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    lines = zipfile.ZipFile(io.BytesIO(got.content)).read("data.jsonl").decode().splitlines()
    assert len(lines) == len(CASES)
    row = json.loads(lines[0])
    assert len(row) == 2
    assert row[0]["prompt"] == CASES[0]["prompt"] and row[0]["completion"] == "北京"
    assert {e["name"] for e in row[0]["evaluation"]} == set(KEYS)
    # A tampered signature is refused.
    bad = client.get(info["downloadUrl"].replace("signature=", "signature=0"))
    assert bad.status_code == 403


def test_inference_by_the_mock_model_and_partly_done(client: Any) -> None:
    dataset_id = add_dataset(client, [{"prompt": "hello world", "reference": "hello"}])
    created = create_eval(client, dataset_id)
    detail = wait_state(client, created["evalId"])
    assert detail["state"] == "Done"
    page = ok(client, f"{EVAL}/result/list", {"id": created["evalId"]})
    assert page["items"][0]["prediction"].startswith("mock answer")


@pytest.mark.inprocess
def test_failed_inference_is_partly_done(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from evaldock.engines.errors import EngineError

    judge = client.app.state.ctx.engines["judge"]
    original = judge.generate

    async def flaky(messages: list[dict[str, Any]], **kw: Any) -> Any:
        if "fail" in messages[-1]["content"]:
            raise EngineError("backend refused")
        return await original(messages, **kw)

    monkeypatch.setattr(judge, "generate", flaky)
    dataset_id = add_dataset(
        client, [{"prompt": "please fail", "reference": "x"}, {"prompt": "ok", "reference": "ok"}]
    )
    created = create_eval(client, dataset_id)
    detail = wait_state(client, created["evalId"])
    assert detail["state"] == "PartlyDone" and detail["failedCases"] == 1
    report = ok(client, f"{EVAL}/report", {"id": created["evalId"]})
    assert report[0]["effectMetric"]["accuracy"] in (0.0, 1.0)
    all_fail = add_dataset(client, [{"prompt": "fail me", "reference": "x"}])
    failed = wait_state(client, create_eval(client, all_fail)["evalId"])
    assert failed["state"] == "Failed" and "inference failed" in failed["errMsg"]


def test_business_errors_at_http_200(client: Any) -> None:
    r = call(client, f"{EVAL}/detail", {"id": "ame-missing"})
    assert r.status_code == 200
    body = r.json()
    assert body["error_code"] == 500001
    assert body["error_msg"] == "param invalid: evaluation ame-missing not found"
    assert body["log_id"]
    r = call(client, f"{EVAL}/report", {"id": 12345})
    assert r.json()["error_msg"] == "param invalid: evaluation 12345 not found"
    r = call(client, f"{EVAL}/detail", {})
    assert r.status_code == 200 and r.json()["error_msg"].startswith("param invalid: id")
    dataset_id = add_dataset(client, CASES)
    body = {
        "name": "x",
        "versionEvalInfo": [{"modelId": 1, "modelVersionId": 2}],
        "datasetId": "ds-nope",
        "evalStandardConf": {"evalMode": "rule"},
    }
    msg = call(client, f"{EVAL}/create", body).json()["error_msg"]
    assert msg.startswith("param invalid: datasetId ds-nope not found")
    body["datasetId"] = dataset_id
    body["evalStandardConf"] = {"evalMode": "rule,bogus"}
    assert "bogus is not one of" in call(client, f"{EVAL}/create", body).json()["error_msg"]
    body["evalStandardConf"] = {
        "evalMode": "rule",
        "evaluationDimension": [{"dimension": str(i)} for i in range(5)],
    }
    msg = call(client, f"{EVAL}/create", body).json()["error_msg"]
    assert msg.startswith("param invalid: evalStandardConf.evaluationDimension")
    # None of the codes the SDK retries.
    for r in (call(client, f"{EVAL}/cancel", {"id": "x"}), call(client, f"{EVAL}/delete", {})):
        assert r.json()["error_code"] not in (500000, 336100, 18)


def test_cancel_delete_and_model_list(client: Any) -> None:
    dataset_id = add_dataset(client, CASES)
    created = create_eval(client, dataset_id)
    wait_state(client, created["evalId"])
    # A finished task cannot be stopped.
    r = call(client, f"{EVAL}/cancel", {"id": created["evalId"]}).json()
    assert "only a running task can be stopped" in r["error_msg"]
    assert ok(client, f"{EVAL}/delete", {"evalIds": [created["evalIdStr"]]}) is True
    r = call(client, f"{EVAL}/detail", {"id": created["evalId"]}).json()
    assert r["error_code"] == 500001
    models = ok(client, f"{EVAL}/model/list", {})
    assert models and models[0]["modelVersionList"]


def test_tenants_do_not_see_each_other(make_client: Any) -> None:
    client = make_client(**{"auth.qianfan.keys": ["ak1:sk1", "ak2:sk2"]})
    dataset_id = str(
        ok(client, f"{DATASET}/create", {"name": "d", "cases": CASES}, ak="ak1", sk="sk1")[
            "datasetId"
        ]
    )
    body = {
        "name": "x",
        "versionEvalInfo": [{"modelId": 1, "modelVersionId": 2}],
        "datasetId": dataset_id,
        "evalStandardConf": {"evalMode": "rule"},
    }
    created = ok(client, f"{EVAL}/create", body, ak="ak1", sk="sk1")
    other = call(client, f"{EVAL}/detail", {"id": created["evalId"]}, ak="ak2", sk="sk2").json()
    assert other["error_msg"].endswith("not found")
    r = call(client, f"{EVAL}/create", body, ak="ak2", sk="sk2").json()
    assert r["error_msg"].startswith(f"param invalid: datasetId {dataset_id} not found")
    # The development pair is gone once keys are configured.
    assert call(client, f"{EVAL}/detail", {"id": 1}).status_code == 401


def test_jsonl_dataset_and_field_bounds(make_client: Any) -> None:
    client = make_client(**{"qianfan.max_field_chars": 20})
    lines = "\n".join(json.dumps(c, ensure_ascii=False) for c in CASES[:2]) + "\n"
    path = f"{DATASET}/create?name=jl"
    headers = signed_headers("POST", path, host_of(client), content_type="text/plain")
    r = client.post(path, content=lines.encode(), headers=headers)
    assert r.status_code == 200 and "result" in r.json(), r.json()
    assert r.json()["result"]["caseCount"] == 2
    assert r.json()["result"]["withPredictions"] is True
    long = [{"prompt": "x" * 21, "reference": "y"}]
    r = call(client, f"{DATASET}/create", {"name": "d", "cases": long}).json()
    assert r["error_msg"] == (
        "param invalid: cases[0].prompt is longer than 20 characters "
        "(setting [qianfan] max_field_chars)"
    )
    listed = ok(client, f"{DATASET}/list", {})
    assert [d["name"] for d in listed["items"]] == ["jl"]


def test_prefix_mount_and_empty_action(client: Any) -> None:
    # The SDK signs /wenxinworkshop/... while sending /qianfan/wenxinworkshop/...
    r = call(client, f"{EVAL}/model/list", {}, prefix="/qianfan")
    assert r.status_code == 200 and "result" in r.json()
    r = call(client, f"{EVAL}/model/list?Action=", {})
    assert r.status_code == 200 and "result" in r.json()


def test_iam_failures(client: Any) -> None:
    r = call(client, f"{EVAL}/detail", {"id": 1}, sk="wrong")
    assert r.status_code == 403
    assert r.headers["X-Bce-Error-Code"] == "SignatureDoesNotMatch"
    assert r.headers["X-Bce-Error-Message"] == (
        "SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match"
    )
    assert r.json()["code"] == "SignatureDoesNotMatch"
    r = call(client, f"{EVAL}/detail", {"id": 1}, ak="nobody")
    assert r.status_code == 401
    assert r.headers["X-Bce-Error-Message"] == "NotFound, cause: Could not find credential."
    r = client.post(f"{EVAL}/detail", json={"id": 1})
    assert r.status_code == 401 and r.json()["message"].startswith("NotFound")
    stale = datetime.now(UTC) - timedelta(hours=1)
    r = call(client, f"{EVAL}/detail", {"id": 1}, when=stale)
    assert r.status_code == 403
    r = client.get(f"{EVAL}/detail")
    assert r.status_code in (401, 405)


def test_partial_export_and_fields(client: Any) -> None:
    dataset_id = add_dataset(client, CASES)
    created = create_eval(client, dataset_id)
    wait_state(client, created["evalId"])
    page = ok(client, f"{EVAL}/result/list", {"id": created["evalId"]})
    wanted = page["items"][1]["id"]
    body = {
        "id": created["evalId"],
        "exportOpt": "part",
        "resultIds": [wanted],
        "exportContent": ["prediction"],
    }
    export = ok(client, f"{EVAL}/result/export", body)
    info = wait_export(client, export["exportIDStr"])
    got = client.get(info["downloadUrl"])
    lines = zipfile.ZipFile(io.BytesIO(got.content)).read("data.jsonl").decode().splitlines()
    assert len(lines) == 1
    (entry,) = json.loads(lines[0])
    assert entry["prediction"] == CASES[1]["prediction"]
    assert "prompt" not in entry and "metrics" not in entry
    r = call(client, f"{EVAL}/result/export", {"id": created["evalId"], "exportOpt": "part"})
    assert r.json()["error_msg"] == "param invalid: resultIds is required when exportOpt is part"


def test_stop_a_running_task(make_client: Any) -> None:
    client = make_client(**{"engines.judge.delay_ms": 50, "qianfan.concurrency": 1})
    cases = [{"prompt": f"q{i}", "reference": f"a{i}"} for i in range(200)]
    created = create_eval(client, add_dataset(client, cases))
    wait_state(client, created["evalId"], done=("Doing",))
    stop = ok(client, f"{EVAL}/cancel", {"id": created["evalIdStr"]})
    assert stop == {"result": True, "errorMessage": ""}
    detail = wait_state(client, created["evalId"], done=("Stopping", "Stopped"))
    assert detail["state"] in ("Stopping", "Stopped")
    assert wait_state(client, created["evalId"])["state"] == "Stopped"
    r = call(client, f"{EVAL}/report", {"id": created["evalId"]}).json()
    assert r["error_msg"].endswith("has no report: its state is Stopped")


@pytest.mark.parametrize(
    "body",
    [
        {"id": 2**60},
        {"id": "9" * 40},
        {"id": "ame-\u0000\ud7ff"},
        {"id": ["ame-x"]},
        {"id": None},
        {"id": "x" * 65},
    ],
)
def test_hostile_ids_are_param_invalid(client: Any, body: Any) -> None:
    for route in ("detail", "report", "cancel", "result/list", "result/export"):
        r = call(client, f"{EVAL}/{route}", body)
        assert r.status_code == 200, r.text
        assert r.json()["error_code"] == 500001


def test_hostile_bodies(client: Any) -> None:
    nested: Any = {}
    for _ in range(200):
        nested = {"a": nested}
    for raw in (b"{", b"[]", b"null", json.dumps({"id": nested}).encode(), b"\xff\xfe"):
        headers = signed_headers("POST", f"{EVAL}/detail", host_of(client))
        r = client.post(f"{EVAL}/detail", content=raw, headers=headers)
        assert r.status_code == 200 and r.json()["error_code"] == 500001, raw
    r = call(client, f"{EVAL}/delete", {"evalIds": list(range(101))})
    assert r.json()["error_msg"].startswith("param invalid: evalIds")
    r = call(client, f"{DATASET}/create", {"name": "d", "cases": [{"prompt": 1, "reference": ""}]})
    assert r.json()["error_code"] == 500001
