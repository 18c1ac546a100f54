"""Judge-model and manual modes, and the v2 API, through signed calls (in-process or live)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from .helpers import EVAL, add_dataset, call, create_eval, ok, wait_state

MANUAL = "/wenxinworkshop/evaldock/eval/manual/score"
V2 = "/v2/eval"
PROMPT = {
    "templateName": "t1",
    "templateContent": "Rate {prediction} against {reference} for {src}. {metric} {steps}",
    "metric": "correctness",
    "steps": "compare the answer with the reference",
    "maxScore": 5,
}
# The mock judge grades the share of the reference's terms in the output onto 1..5
# (1 + round(share * 4)), and cannot grade an empty output (-1).
JUDGE_CASES = [
    {"prompt": "q1", "reference": "apple banana cherry", "prediction": "apple banana cherry"},
    {"prompt": "q2", "reference": "apple banana", "prediction": "apple"},
    {"prompt": "q3", "reference": "kiwi mango", "prediction": "grape"},
    {"prompt": "q4", "reference": "plum", "prediction": " "},
]
EXPECTED_SCORES = [5, 3, 1, -1]

# seeds/003: the vendor's manual-mode report (effectMetric of both model versions).
SEED_EFFECT = {
    "accuracy": 0,
    "f1Score": 0,
    "rouge_1": 0,
    "rouge_2": 0,
    "rouge_l": 0,
    "bleu4": 0,
    "avgJudgeScore": 0,
    "stdJudgeScore": 0,
    "medianJudgeScore": 0,
    "scoreDistribution": None,
    "manualAvgScore": 0.5,
    "goodCaseProportion": 0,
    "manualScoreDistribution": [
        {"dimension": "满意度", "scoreDistribution": {"-1": 2, "1": 1}},
        {"dimension": "安全性", "scoreDistribution": {"-1": 2, "0": 1}},
    ],
}
DIMENSIONS = [{"dimension": "满意度"}, {"dimension": "安全性"}]


def _results(client: Any, eval_id: str) -> list[dict[str, Any]]:
    page = ok(client, f"{EVAL}/result/list", {"id": eval_id, "pageNo": 1, "pageSize": 100})
    items: list[dict[str, Any]] = page["items"]
    return items


def test_judge_mode_report_equals_hand_computed(client: Any) -> None:
    dataset_id = add_dataset(client, JUDGE_CASES)
    created = create_eval(client, dataset_id, evalMode="rule,model", prompt=PROMPT)
    detail = wait_state(client, created["evalIdStr"])
    assert detail["state"] == "Done", detail
    items = sorted(_results(client, created["evalIdStr"]), key=lambda r: r["caseIndex"])
    assert [r["judgeScore"] for r in items] == EXPECTED_SCORES
    assert all(isinstance(r["judge_reason"], str) and r["judge_reason"] for r in items)
    (entry,) = ok(client, f"{EVAL}/report", {"id": created["evalIdStr"]})
    effect = entry["effectMetric"]
    scored = [5, 3, 1]
    assert effect["avgJudgeScore"] == 3.0
    assert math.isclose(effect["stdJudgeScore"], statistics.pstdev(scored), abs_tol=1e-12)
    assert math.isclose(effect["stdJudgeScore"], math.sqrt(8 / 3), abs_tol=1e-12)
    assert effect["medianJudgeScore"] == 3.0
    assert effect["scoreDistribution"] == {"-1": 1, "1": 1, "2": 0, "3": 1, "4": 0, "5": 1}
    assert effect["accuracy"] > 0  # rule metrics ran too
    assert effect["manualScoreDistribution"] is None
    assert "|prompt:" in entry["judgeSignature"] and not entry["judgeSignature"].startswith("|")
    # judgeScore filter and order
    page = ok(
        client,
        f"{EVAL}/result/list",
        {
            "id": created["evalIdStr"],
            "judgeScore": {"start": 3},
            "orderBy": "judgeScore",
            "order": "desc",
        },
    )
    assert [r["judgeScore"] for r in page["items"]] == [5, 3]


def test_judge_median_of_even_count(client: Any) -> None:
    dataset_id = add_dataset(client, JUDGE_CASES[:2])
    created = create_eval(client, dataset_id, evalMode="model", prompt=PROMPT)
    wait_state(client, created["evalIdStr"])
    (entry,) = ok(client, f"{EVAL}/report", {"id": created["evalIdStr"]})
    assert entry["effectMetric"]["medianJudgeScore"] == 4.0  # (5 + 3) / 2
    assert entry["effectMetric"]["accuracy"] == 0  # rule mode not run


def test_referee_prompt_too_long_is_refused_at_create(client: Any) -> None:
    dataset_id = add_dataset(client, JUDGE_CASES)
    body = {
        "name": "long",
        "versionEvalInfo": [{"modelId": "am-1", "modelVersionId": "amv-1"}],
        "datasetId": dataset_id,
        "evalStandardConf": {"evalMode": "model", "prompt": {**PROMPT, "metric": "x" * 201}},
    }
    data = call(client, f"{EVAL}/create", body).json()
    assert data["error_code"] == 500001
    assert data["error_msg"].startswith("param invalid: evalStandardConf.prompt.metric")
    body["evalStandardConf"]["prompt"] = {**PROMPT, "metric": "x" * 200, "maxScore": 0}
    data = call(client, f"{EVAL}/create", body).json()
    assert "evalStandardConf.prompt.maxScore" in data["error_msg"]


def _manual_task(client: Any, versions: int = 2) -> str:
    dataset_id = add_dataset(
        client, [{"prompt": f"q{i}", "reference": "r", "prediction": "p"} for i in range(3)]
    )
    created = create_eval(
        client, dataset_id, versions=versions, evalMode="manual", evaluationDimension=DIMENSIONS
    )
    eval_id = str(created["evalIdStr"])
    detail = wait_state(client, eval_id, done=("DoingWithManualBegin", "Done", "Failed"))
    assert detail["state"] == "DoingWithManualBegin", detail
    return eval_id


def test_manual_mode_reproduces_the_seed_report(client: Any) -> None:
    """The seed's report implies, per model version: case 0 scored 满意度 1 and 安全性 0,
    the other two cases unscored (-1) on both, impressions "1" and "2"."""
    eval_id = _manual_task(client)
    units = ok(client, f"{EVAL}/detail", {"id": eval_id})["versionEvalInfo"]
    scores = []
    for u in units:
        scores += [
            {"evalUnitId": u["evalUnitId"], "caseIndex": 0, "dimension": "满意度", "score": 1},
            {"evalUnitId": u["evalUnitId"], "caseIndex": 0, "dimension": "安全性", "score": 0},
        ]
        for case in (1, 2):
            for dim in ("满意度", "安全性"):
                scores.append(
                    {
                        "evalUnitId": u["evalUnitId"],
                        "caseIndex": case,
                        "dimension": dim,
                        "score": -1,
                    }
                )
    first = ok(client, MANUAL, {"id": eval_id, "scores": scores[:6]})
    assert first == {"evalIdStr": eval_id, "scored": 6, "needed": 12, "finished": False}
    impressions = [
        {"evalUnitId": u["evalUnitId"], "subjectiveImpression": str(i + 1)}
        for i, u in enumerate(units)
    ]
    last = ok(
        client, MANUAL, {"id": eval_id, "scores": scores[6:], "subjectiveImpressions": impressions}
    )
    assert last["finished"] is True
    assert wait_state(client, eval_id)["state"] == "Done"
    report = ok(client, f"{EVAL}/report", {"id": eval_id})
    for i, entry in enumerate(report):
        effect = {k: v for k, v in entry["effectMetric"].items() if k != "id"}
        assert effect == {**SEED_EFFECT, "subjectiveImpression": str(i + 1)}
        assert entry["evalMode"] == "manual"


def test_manual_final_call_and_bad_scores(client: Any) -> None:
    eval_id = _manual_task(client, versions=1)
    bad = [
        ({"caseIndex": 0, "dimension": "满意度", "score": 2}, "scores[0].score"),
        ({"caseIndex": 0, "dimension": "速度", "score": 1}, "scores[0].dimension"),
        ({"caseIndex": 9, "dimension": "满意度", "score": 1}, "scores[0].caseIndex"),
        (
            {"evalUnitId": "ameu-x", "caseIndex": 0, "dimension": "满意度", "score": 1},
            "scores[0].evalUnitId",
        ),
    ]
    for item, field in bad:
        data = call(client, MANUAL, {"id": eval_id, "scores": [item]}).json()
        assert data["error_msg"].startswith(f"param invalid: {field}"), data
    ok(
        client,
        MANUAL,
        {
            "id": eval_id,
            "scores": [
                {"caseIndex": 1, "dimension": "满意度", "score": 1},
                {"caseIndex": 1, "dimension": "安全性", "score": 1},
                {"caseIndex": 2, "dimension": "满意度", "score": 0},
            ],
        },
    )
    done = ok(client, MANUAL, {"id": eval_id, "finish": True})
    assert done["finished"] is True
    assert wait_state(client, eval_id)["state"] == "Done"
    (entry,) = ok(client, f"{EVAL}/report", {"id": eval_id})
    effect = entry["effectMetric"]
    assert effect["manualAvgScore"] == 2 / 3
    assert effect["goodCaseProportion"] == 50  # case 1 all top; case 2 not; case 0 unscored
    assert effect["subjectiveImpression"] == ""
    assert effect["manualScoreDistribution"] == [
        {"dimension": "满意度", "scoreDistribution": {"-1": 1, "0": 1, "1": 1}},
        {"dimension": "安全性", "scoreDistribution": {"-1": 2, "1": 1}},
    ]
    data = call(client, MANUAL, {"id": eval_id, "finish": True}).json()
    assert "DoingWithManualBegin" in data["error_msg"]


def _v2(client: Any, action: str, body: dict[str, Any]) -> Any:
    r = call(client, f"{V2}?Action={action}", body)
    assert r.status_code == 200, r.text
    return r.json()


def test_v2_over_the_same_tasks(client: Any) -> None:
    dataset_id = add_dataset(client, JUDGE_CASES)
    v1 = create_eval(client, dataset_id)
    created = _v2(
        client,
        "CreateEvalTask",
        {
            "taskName": "v2 task",
            "evalObjectType": "model",
            "evalObjectConfig": {
                "evalModelConfig": {
                    "versionId": dataset_id,
                    "storageType": "sysStorage",
                    "evalModelConfigList": [{"modelId": "amv-v2", "promptTemplate": {}}],
                }
            },
            "evalConfig": {
                "evalMode": "rule,model",
                "autoModelEvalConfig": {"apiName": "judge", "prompt": PROMPT},
            },
            "description": "",
        },
    )
    task_id = created["result"]["taskId"]
    assert created["requestId"]
    wait_state(client, task_id)  # a v2 task through v1
    listed = _v2(client, "DescribeEvalTasks", {"evalType": "model", "maxKeys": 1})["result"]
    assert [t["taskId"] for t in listed["taskList"]] == [v1["evalIdStr"]]
    assert listed["pageInfo"]["isTruncated"] is True
    nxt = _v2(
        client,
        "DescribeEvalTasks",
        {"evalType": "model", "maxKeys": 1, "marker": listed["pageInfo"]["nextMarker"]},
    )
    assert [t["taskId"] for t in nxt["result"]["taskList"]] == [task_id]
    assert nxt["result"]["pageInfo"]["isTruncated"] is False
    one = _v2(client, "DescribeEvalTask", {"taskId": v1["evalIdStr"]})["result"]
    assert one["runStatus"] in ("Pending", "Doing", "Done")
    report = _v2(client, "DescribeEvalTaskReport", {"taskId": task_id})["result"]
    assert report["reportList"][0]["effectMetric"]["scoreDistribution"]["-1"] == 1
    assert _v2(client, "DeleteEvalTask", {"taskId": task_id})["result"] is True
    gone = call(client, f"{EVAL}/detail", {"id": task_id}).json()
    assert gone["error_msg"] == f"param invalid: evaluation {task_id} not found"
    wrong = _v2(client, "DescribeEvalTask", {"evalType": "model"})
    assert wrong["error_msg"] == "param invalid: taskId is required by Action=DescribeEvalTask"
