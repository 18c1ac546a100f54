# ruff: noqa: RUF001 - full-width punctuation is the test data
"""The Qianfan surface over real HTTP (``evaldock serve`` processes): the official
``qianfan`` SDK end to end, the dataset CLI, and a SIGKILL in the middle of a task."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.engines.text_metrics_reference import KEYS, ReferenceMetrics
from tests.serverproc import ServerProcess

from .helpers import EVAL, signed_headers

HERE = Path(__file__).parent
CASES = [
    {"prompt": "中国的首都是哪里？", "reference": "北京", "prediction": "中国的首都是北京。"},
    {"prompt": "What is 2+2?", "reference": "4", "prediction": "The answer is 4"},
    {"prompt": "Name a colour", "reference": "red", "prediction": "blue"},
    {"prompt": "翻译：你好", "reference": "hello", "prediction": "Hello there, hello!"},
]


def add_dataset(data_dir: Path, cases: list[dict[str, str]], dataset_id: str) -> None:
    path = data_dir.parent / f"{dataset_id}.jsonl"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evaldock.server",
            "qianfan",
            "--data",
            str(data_dir),
            "add-dataset",
            str(path),
            "--name",
            "walk",
            "--id",
            dataset_id,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"registered dataset {dataset_id}" in proc.stdout


def test_official_sdk_walk(clients_python: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServerProcess(data) as server:
        add_dataset(data, CASES, "ds-walk")
        out = tmp_path / "walk.json"
        proc = subprocess.run(
            [
                clients_python,
                str(HERE / "qianfan_client_walk.py"),
                f"{server.url}/qianfan",
                "ds-walk",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"client walk failed:\n{proc.stdout}\n{proc.stderr}"
    seen: dict[str, Any] = json.loads(out.read_text())
    assert seen["created"]["evalIdStr"].startswith("ame-")
    assert seen["states"][-1] == "Done"
    report = seen["report"]
    assert len(report) == 1
    expected = ReferenceMetrics(tmp_path / "jieba").mean(
        [
            ReferenceMetrics(tmp_path / "jieba").per_case(c["prediction"], c["reference"])
            for c in CASES
        ]
    )
    for key in KEYS:
        assert report[0]["effectMetric"][key] == pytest.approx(expected[key], abs=1e-9)
    assert seen["results"]["totalCount"] == len(CASES)
    assert seen["export"]["state"] == "Done"
    rows = seen["data_jsonl"]
    assert [r[0]["prompt"] for r in rows] == [c["prompt"] for c in CASES]
    assert seen["missing"] == [500001, "param invalid: evaluation ame-doesnotexist not found"]
    assert "SignatureDoesNotMatch" in seen["wrong_sk"] and "403" in seen["wrong_sk"]
    assert seen["after_delete"].endswith("not found")
    # The SDK reports the gateway's reason for a lifetime past the bound (not "wrong SK").
    assert "max_expiration_seconds" in seen["long_lifetime"] and "403" in seen["long_lifetime"]
    detail = seen["detail"]
    assert detail["evaluationId"] == seen["created"]["evalId"]
    assert detail["computeResourceConf"]["vmNumber"] == 8  # what the SDK sends
    assert detail["evalStandardConf"]["resultDatasetIdStr"] == ""
    assert seen["export"]["exportIDStr"].startswith("amemt-")
    assert seen["export"]["exportType"] == "local"
    version = seen["models"][0]["modelVersionList"][0]
    assert {"sourceType", "framework", "algorithm", "modelNet", "description"} <= set(version)


def _post(server: ServerProcess, path: str, body: Any) -> Any:
    host = f"127.0.0.1:{server.port}"
    r = httpx.post(
        server.url + path, json=body, headers=signed_headers("POST", path, host), timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_sigkill_during_a_task_ends_it(tmp_path: Path) -> None:
    """Inference slowed by the mock judge's delay; SIGKILL while it runs; the task ends
    Done (resumed from the stored results) or Failed with a reason, never stuck."""
    data = tmp_path / "data"
    config = tmp_path / "slow.toml"
    config.write_text(
        '[engines.judge]\ndelay_ms = 30\n[qianfan]\nconcurrency = 2\ndefault_model = "mock"\n'
    )
    cases = [{"prompt": f"question {i}", "reference": f"answer {i}"} for i in range(300)]
    server = ServerProcess(data, config=config)
    server.start()
    try:
        add_dataset(data, cases, "ds-slow")
        body = {
            "name": "crash",
            "versionEvalInfo": [{"modelId": 1, "modelVersionId": 1}],
            "datasetId": "ds-slow",
            "evalStandardConf": {"evalMode": "rule"},
        }
        eval_id = _post(server, f"{EVAL}/create", body)["result"]["evalIdStr"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            detail = _post(server, f"{EVAL}/detail", {"id": eval_id})["result"]
            if detail["state"] == "Doing" and detail["progress"]["processed"] > 0:
                break
            time.sleep(0.05)
        assert detail["state"] == "Doing", detail
        server.kill()
        server.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            detail = _post(server, f"{EVAL}/detail", {"id": eval_id})["result"]
            if detail["state"] not in ("Pending", "Doing"):
                break
            time.sleep(0.1)
        assert detail["state"] in ("Done", "Failed"), detail
        if detail["state"] == "Failed":
            assert detail["errMsg"]
        else:
            assert detail["progress"] == {"processed": 300, "total": 300}
    finally:
        server.stop()


def test_official_sdk_modes_and_v2(clients_python: str, tmp_path: Path) -> None:
    """The SDK runs rule,model to Done, manual through DoingWithManualBegin to Done with
    scores sent through the extension endpoint, and the v2 actions through Eval.V2."""
    data = tmp_path / "data"
    with ServerProcess(data) as server:
        add_dataset(data, CASES, "ds-modes")
        out = tmp_path / "modes.json"
        proc = subprocess.run(
            [
                clients_python,
                str(HERE / "qianfan_modes_walk.py"),
                f"{server.url}/qianfan",
                "ds-modes",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, f"modes walk failed:\n{proc.stdout}\n{proc.stderr}"
    seen: dict[str, Any] = json.loads(out.read_text())
    assert seen["judge_states"][-1] == "Done"
    effect = seen["judge_report"][0]["effectMetric"]
    scores = [r["judgeScore"] for r in seen["judge_results"]["items"]]
    valid = sorted(s for s in scores if s != -1)
    assert effect["avgJudgeScore"] == pytest.approx(sum(valid) / len(valid), abs=1e-12)
    assert effect["scoreDistribution"]["-1"] == scores.count(-1)
    assert sum(effect["scoreDistribution"].values()) == len(CASES)
    assert effect["rouge_1"] > 0 and effect["accuracy"] == 0  # scoreModes: similarity only
    assert all(r["judge_reason"] for r in seen["judge_results"]["items"])
    assert "DoingWithManualBegin" in seen["manual_states"]
    assert seen["manual_stop"]["result"] is False and seen["manual_stop"]["errorMessage"]
    detail = seen["manual_detail"]
    assert detail["state"] == "DoingWithManualBegin"
    assert [u["modelVersion"] for u in detail["evalUnits"]] == ["amv-walk"]
    assert [d["maxScore"] for d in detail["evalStandardConf"]["evaluationDimension"]] == [1, 1]
    assert seen["manual_states"][-1] == "Done"
    assert seen["submitted"]["finished"] is True
    manual = seen["manual_report"][0]["effectMetric"]
    n = len(CASES)
    assert manual["manualAvgScore"] == pytest.approx((2 * n - 1) / (2 * n), abs=1e-12)
    assert manual["goodCaseProportion"] == round(100 * (n - 1) / n)
    assert manual["subjectiveImpression"] == "fluent"
    assert seen["v2_states"][-1] == "Done"
    assert seen["v2_report"]["reportList"][0]["evaluationIdStr"] == seen["v2_created"]["taskId"]
    listed = [t["taskId"] for t in seen["v2_list"]["taskList"]]
    assert seen["v2_created"]["taskId"] in listed and len(listed) == 3
    assert seen["v2_task"]["runStatus"] == "Done"
    assert seen["v2_delete"] is True
    assert seen["v2_created"]["taskId"] not in seen["v2_after"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaldock.server", "qianfan", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_score_finishes_a_manual_task(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServerProcess(data) as server:
        add_dataset(data, CASES[:2], "ds-cli")
        body = {
            "name": "cli",
            "versionEvalInfo": [{"modelId": 1, "modelVersionId": 1}],
            "datasetId": "ds-cli",
            "evalStandardConf": {"evalMode": "manual"},
        }
        eval_id = _post(server, f"{EVAL}/create", body)["result"]["evalIdStr"]
        for _ in range(600):
            state = _post(server, f"{EVAL}/detail", {"id": eval_id})["result"]["state"]
            if state == "DoingWithManualBegin":
                break
            time.sleep(0.05)
        url = f"--url={server.url}/qianfan"
        bad = _cli("score", eval_id, "--score", "0:满意度:5", url)
        assert bad.returncode == 1 and "scores[0].score 5 is outside 0..1" in bad.stderr
        first = _cli("score", eval_id, "--score", "0:满意度:1", "--impression", "ok", url)
        assert first.returncode == 0, first.stderr
        assert "1 of 2 scores held" in first.stdout
        last = _cli("score", eval_id, "--score", "1:满意度:0", url)
        assert "manual scoring finished" in last.stdout
        for _ in range(600):
            state = _post(server, f"{EVAL}/detail", {"id": eval_id})["result"]["state"]
            if state == "Done":
                break
            time.sleep(0.05)
        assert state == "Done"
        (entry,) = _post(server, f"{EVAL}/report", {"id": eval_id})["result"]
        assert entry["effectMetric"]["manualAvgScore"] == 0.5
        assert entry["effectMetric"]["goodCaseProportion"] == 50
        assert entry["effectMetric"]["subjectiveImpression"] == "ok"
        wrong = _cli("score", eval_id, "--score", "0:满意度:1", url, "--secret-key", "nope")
        assert wrong.returncode == 2 and "403" in wrong.stderr


def test_judge_mode_with_a_served_judge(tmp_path: Path) -> None:
    """--mode real: the referee prompt goes to the OpenAI-compatible judge (the loopback
    fake answers the scale's maximum), filled with the case's texts."""
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as fake:
        env = {"EVALDOCK_JUDGE_URLS": fake.url, "EVALDOCK_JUDGE_MODEL": "fake-model"}
        data = tmp_path / "data"
        with ServerProcess(data, mode="real", env=env) as server:
            add_dataset(data, CASES, "ds-real")
            body = {
                "name": "real judge",
                "versionEvalInfo": [{"modelId": 1, "modelVersionId": 1}],
                "datasetId": "ds-real",
                "evalStandardConf": {
                    "evalMode": "model",
                    "prompt": {
                        "templateContent": "Grade {prediction} vs {reference}",
                        "metric": "m",
                        "steps": "s",
                        "maxScore": 4,
                    },
                },
            }
            eval_id = _post(server, f"{EVAL}/create", body)["result"]["evalIdStr"]
            for _ in range(600):
                state = _post(server, f"{EVAL}/detail", {"id": eval_id})["result"]["state"]
                if state not in ("Pending", "Doing"):
                    break
                time.sleep(0.05)
            assert state == "Done"
            (entry,) = _post(server, f"{EVAL}/report", {"id": eval_id})["result"]
        prompts = json.dumps(fake.requests, ensure_ascii=False)
    effect = entry["effectMetric"]
    assert effect["scoreDistribution"] == {"-1": 0, "1": 0, "2": 0, "3": 0, "4": len(CASES)}
    assert effect["avgJudgeScore"] == 4 and effect["stdJudgeScore"] == 0
    assert "openai" in entry["judgeSignature"] or "fake-model" in entry["judgeSignature"]
    assert "Grade 中国的首都是北京。 vs 北京" in prompts
