"""Field by field against the SDK's own mock server (bce-qianfan-sdk ``py/v0.4.12.3``,
``python/qianfan/tests/utils/mock_server.py``) and the console docs, plus the hostile
inputs that answered 500 (issue 18). In-process, and live with EVALDOCK_TEST_SERVER=1."""

from __future__ import annotations

import json
from typing import Any

import pytest

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

V2 = "/v2/eval"
MANUAL = "/wenxinworkshop/evaldock/eval/manual/score"
CASES = [
    {"prompt": "What is 2+2?", "reference": "4", "prediction": "The answer is 4"},
    {"prompt": "Name a colour", "reference": "red", "prediction": "blue"},
]
PROMPT = {"templateName": "t", "metric": "correctness", "steps": "compare", "maxScore": 7}

# The mock server's key sets (what its answers hold; evaldock may hold more).
DETAIL_KEYS = {
    "evaluationId",
    "name",
    "description",
    "state",
    "evalUnits",
    "datasetId",
    "datasetName",
    "computeResourceConf",
    "evalStandardConf",
}
UNIT_KEYS = {
    "modelVersionId",
    "modelId",
    "modelName",
    "modelVersion",
    "modelSource",
    "state",
    "modelVersionDesc",
    "message",
    "modelTags",
}
COMPUTE_KEYS = {"vmType", "vmNumber", "computeResourceId", "cpu", "memory"}
RESULT_DATASET_KEYS = {
    "resultDatasetId",
    "resultDatasetIdStr",
    "resultDatasetName",
    "resultDatasetProjectType",
    "resultDatasetImportStatus",
    "resultDatasetReleaseStatus",
}
EXPORT_INFO_KEYS = {
    "id",
    "exportID",
    "exportIDStr",
    "state",
    "exportType",
    "volumeId",
    "exportPath",
    "downloadUrl",
}
MODEL_KEYS = {"modelId", "modelIdStr", "modelName", "source", "modelType", "trainType"}
VERSION_KEYS = {
    "modelVersionId",
    "modelVersionIdStr",
    "version",
    "sourceType",
    "framework",
    "algorithm",
    "modelNet",
    "trainType",
    "description",
}


# -- eval/cancel ---------------------------------------------------------------------------
def test_cancel_answers_the_documented_result_object(make_client: Any) -> None:
    client = make_client(**{"engines.judge.delay_ms": 50, "qianfan.concurrency": 1})
    cases = [{"prompt": f"q{i}", "reference": f"a{i}"} for i in range(200)]
    created = create_eval(client, add_dataset(client, cases))
    wait_state(client, created["evalId"], done=("Doing",))
    assert ok(client, f"{EVAL}/cancel", {"id": created["evalIdStr"]}) == {
        "result": True,
        "errorMessage": "",
    }
    assert wait_state(client, created["evalId"])["state"] == "Stopped"


def test_a_task_with_manual_mode_cannot_be_stopped(client: Any) -> None:
    dataset_id = add_dataset(client, CASES)
    created = create_eval(client, dataset_id, evalMode="rule,manual")
    wait_state(client, created["evalId"], done=("DoingWithManualBegin",))
    result = ok(client, f"{EVAL}/cancel", {"id": created["evalIdStr"]})
    assert result["result"] is False
    assert "不允许停止" in result["errorMessage"]
    assert "evalMode rule,manual" in result["errorMessage"]
    # Still waiting for people, and their scores still finish it.
    detail = ok(client, f"{EVAL}/detail", {"id": created["evalId"]})
    assert detail["state"] == "DoingWithManualBegin"
    assert ok(client, MANUAL, {"id": created["evalId"], "finish": True})["finished"] is True
    assert wait_state(client, created["evalId"])["state"] == "Done"


DIMS = [{"dimension": "满意度"}]


# -- eval/detail ---------------------------------------------------------------------------
def test_detail_holds_the_mock_servers_fields(client: Any) -> None:
    dataset_id = add_dataset(client, CASES)
    dims = [{"dimension": "满意度"}, {"dimension": "安全性", "description": "d", "maxScore": 2}]
    created = create_eval(
        client,
        dataset_id,
        versions=2,
        evalMode="rule,model,manual",
        prompt=PROMPT,
        evaluationDimension=dims,
    )
    detail = wait_state(client, created["evalId"], done=("DoingWithManualBegin",))
    assert set(detail) >= DETAIL_KEYS
    assert detail["evaluationId"] == created["evalId"]
    # evaldock's own fields stay.
    assert detail["evalIdStr"] == created["evalIdStr"] and "versionEvalInfo" in detail
    assert len(detail["evalUnits"]) == 2
    for i, unit in enumerate(detail["evalUnits"]):
        assert set(unit) >= UNIT_KEYS
        assert isinstance(unit["modelVersionId"], int) and isinstance(unit["modelId"], int)
        assert unit["modelVersion"] == f"amv-{i}"
        assert unit["state"] == "DoingWithManualBegin"
        assert unit["modelTags"] is None and unit["message"] == ""
    assert detail["computeResourceConf"] == {
        "vmType": 1,
        "vmNumber": 8,
        "computeResourceId": "",
        "cpu": 0,
        "memory": 0,
    }
    conf = detail["evalStandardConf"]
    assert set(conf) >= RESULT_DATASET_KEYS
    assert conf["resultDatasetIdStr"] == "" and conf["stopWordsPath"] == ""
    assert conf["prompt"]["minScore"] == 1 and conf["prompt"]["maxScore"] == 7
    assert conf["prompt"]["metric"] == "correctness"
    assert [(d["minScore"], d["maxScore"]) for d in conf["evaluationDimension"]] == [
        (0, 1),
        (0, 2),
    ]
    assert conf["evaluationDimension"][1]["description"] == "d"
    assert conf["evaluationDimension"][0]["description"] == ""


def test_a_judged_manual_task_ends_with_all_its_work_counted(client: Any) -> None:
    """The job runs again from the top after the final manual call; its progress once
    stayed at the inference half (4/8) although every case was judged."""
    dataset_id = add_dataset(client, CASES)
    created = create_eval(
        client, dataset_id, evalMode="model,manual", prompt=PROMPT, evaluationDimension=DIMS
    )
    wait_state(client, created["evalId"], done=("DoingWithManualBegin",))
    assert ok(client, MANUAL, {"id": created["evalId"], "finish": True})["finished"] is True
    detail = wait_state(client, created["evalId"])
    assert detail["state"] == "Done"
    progress = detail["progress"]
    assert progress["total"] == 2 * len(CASES) and progress["processed"] == progress["total"]


def test_detail_of_a_rule_task_names_no_referee(client: Any) -> None:
    created = create_eval(client, add_dataset(client, CASES))
    detail = wait_state(client, created["evalId"])
    conf = detail["evalStandardConf"]
    assert "prompt" not in conf and "evaluationDimension" not in conf
    assert conf["stopWordsPath"] == "" and conf["resultDatasetId"] == 0
    assert [u["state"] for u in detail["evalUnits"]] == ["Done"]


# -- report, export info, model list -------------------------------------------------------
def test_report_export_info_and_model_list_fields(client: Any) -> None:
    created = create_eval(client, add_dataset(client, CASES))
    wait_state(client, created["evalId"])
    (entry,) = ok(client, f"{EVAL}/report", {"id": created["evalIdStr"]})
    assert entry["evaluationJobId"] == created["evalId"] and entry["projectId"] == ""
    export = ok(client, f"{EVAL}/result/export", {"id": created["evalId"]})
    assert export["exportIDStr"].startswith("amemt-")
    info = wait_export(client, export["exportIDStr"])
    assert set(info) >= EXPORT_INFO_KEYS
    assert info["exportIDStr"] == export["exportIDStr"]
    assert info["exportID"] == export["exportID"] and info["id"] == export["exportID"]
    assert info["exportType"] == "local" and info["volumeId"] == ""
    assert info["exportPath"] == f"model_eval_result_export/{export['exportIDStr']}.zip"
    models = ok(client, f"{EVAL}/model/list", {})
    assert models
    for model in models:
        assert set(model) >= MODEL_KEYS
        assert model["modelType"] == 0 and model["trainType"] == ""
        for version in model["modelVersionList"]:
            assert set(version) >= VERSION_KEYS
            assert all(isinstance(version[k], str) for k in VERSION_KEYS - {"modelVersionId"})


# -- bce-auth-v1 ---------------------------------------------------------------------------
def _with_auth(client: Any, timestamp: str | None, expiration: str | None) -> Any:
    """A detail call whose auth string carries this timestamp / expiration (the
    signature then is whatever it was: these are refused before it is compared)."""
    headers = signed_headers("POST", f"{EVAL}/detail", host_of(client))
    parts = headers["authorization"].split("/")
    parts[2] = timestamp if timestamp is not None else parts[2]
    parts[3] = expiration if expiration is not None else parts[3]
    headers["authorization"] = "/".join(parts)
    return client.post(f"{EVAL}/detail", json={"id": 1}, headers=headers)


@pytest.mark.parametrize(
    ("timestamp", "expiration"),
    [
        ("0001-01-01T00:00:00Z", None),
        ("9999-12-31T23:59:59Z", None),
        ("9999-12-31T23:59:59Z", "1800"),
        ("2024-02-30T00:00:00Z", None),
        ("2024-01-01T00:00:00Z" + "0" * 5000, None),
    ],
    ids=["year-1", "year-9999", "year-9999-1800", "feb-30", "5000-chars"],
)
def test_out_of_range_timestamps_are_iams_403(
    client: Any, timestamp: str, expiration: str | None
) -> None:
    r = _with_auth(client, timestamp, expiration)
    assert r.status_code == 403, r.text
    assert r.headers["X-Bce-Error-Message"] == (
        "SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match"
    )


@pytest.mark.parametrize(
    "expiration",
    ["9" * 20, "9" * 5000, "315360000", "1801", "0" * 30 + "1801"],
    ids=["20-digits", "5000-digits", "10-years", "1801", "zero-padded-1801"],
)
def test_a_lifetime_past_the_bound_is_403_naming_the_setting(client: Any, expiration: str) -> None:
    r = _with_auth(client, None, expiration)
    assert r.status_code == 403, r.text
    assert r.headers["X-Bce-Error-Code"] == "SignatureDoesNotMatch"
    message = r.headers["X-Bce-Error-Message"]
    assert message.startswith("SignatureDoesNotMatch, cause: ")
    assert "[qianfan] max_expiration_seconds" in message and "1800 s" in message
    assert r.json()["message"] == message and len(message) < 400


def test_the_lifetime_bound_is_a_setting(make_client: Any) -> None:
    client = make_client(**{"qianfan.max_expiration_seconds": 60})
    # The SDK's own 300 s is then too long; a 60 s signature verifies.
    r = _with_auth(client, None, "300")
    assert r.status_code == 403 and "(60 s," in r.headers["X-Bce-Error-Message"]
    headers = signed_headers("POST", f"{EVAL}/detail", host_of(client))
    assert "/300/" in headers["authorization"]
    r = _with_auth(client, None, "60")
    # Changing the expiration changes the signing key: the signature no longer matches.
    assert r.status_code == 403
    assert r.headers["X-Bce-Error-Message"].endswith("Signature does not match")


# -- datasets and names --------------------------------------------------------------------
def _jsonl(client: Any, text: str, name: str = "jl") -> Any:
    path = f"{DATASET}/create?name={name}"
    headers = signed_headers("POST", path, host_of(client), content_type="text/plain")
    return client.post(path, content=text.encode(), headers=headers)


@pytest.mark.parametrize(
    "line",
    [
        "[" * 1000 + "]" * 1000,
        '{"prompt": "a", "reference": "b", "x": ' + "[" * 1000 + "]" * 1000 + "}",
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["list-1000", "field-1000", "list-100000"],
)
def test_a_deeply_nested_line_is_param_invalid_naming_it(client: Any, line: str) -> None:
    good = json.dumps(CASES[0])
    r = _jsonl(client, f"{good}\n\n{line}\n")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["error_code"] == 500001
    assert body["error_msg"].startswith("param invalid: line 3 is not JSON (")
    assert "nest deeper" in body["error_msg"]


BAD_NAMES = ["a\u202eb", "a\x00b", "a\nb", "..", "a/b", "a\\b", "\ufffd", "x\u2066y"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=ascii)
def test_dataset_names_are_printable_and_not_paths(client: Any, name: str) -> None:
    r = call(client, f"{DATASET}/create", {"name": name, "cases": CASES})
    body = r.json()
    assert body["error_code"] == 500001, body
    assert body["error_msg"].startswith(f"param invalid: name {name!r} ")
    assert ok(client, f"{DATASET}/list", {})["items"] == []


def test_a_jsonl_dataset_name_is_checked_too(client: Any) -> None:
    body = _jsonl(client, json.dumps(CASES[0]) + "\n", name="a%E2%80%AEb").json()
    shown = repr("a\u202eb")  # the name as the message shows it: escaped
    assert body["error_msg"].startswith(f"param invalid: name {shown} contains U+202E")


@pytest.mark.parametrize("name", BAD_NAMES, ids=ascii)
def test_eval_task_names_are_printable_and_not_paths(client: Any, name: str) -> None:
    dataset_id = add_dataset(client, CASES)
    body = {
        "name": name,
        "versionEvalInfo": [{"modelId": 1, "modelVersionId": 2}],
        "datasetId": dataset_id,
        "evalStandardConf": {"evalMode": "rule"},
    }
    r = call(client, f"{EVAL}/create", body).json()
    assert r["error_msg"].startswith(f"param invalid: name {name!r} "), r
    v2 = {
        "taskName": name,
        "evalObjectConfig": {
            "evalModelConfig": {"versionId": dataset_id, "evalModelConfigList": [{"modelId": 1}]}
        },
        "evalConfig": {"evalMode": "rule"},
    }
    r = call(client, f"{V2}?Action=CreateEvalTask", v2).json()
    assert r["error_msg"].startswith(f"param invalid: taskName {name!r} "), r
    listed = ok(client, f"{V2}?Action=DescribeEvalTasks", {"evalType": "auto"})
    assert listed["taskList"] == []
