"""The Marqtune surface in-process: every seed-page error with its exact text, datasets,
models, evaluations and signed URLs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from starlette.testclient import TestClient

from evaldock.engines.ir_metrics import gcl
from evaldock.engines.ranker.mock import MockRanker
from evaldock.server.marqtune import cli as marqtune_cli
from evaldock.server.marqtune import jobs as marqtune_jobs
from evaldock.server.marqtune.errors import (
    DATASET_NOT_READY,
    FAILED_DATASET,
    NOT_EVALUATION_DATASET,
)
from evaldock.server.marqtune.provider import TRAINING_OUT_OF_SCOPE

from . import tasks
from .conftest import ready_dataset
from .helpers import (
    AUTH,
    EVAL_CSV,
    HYPER,
    TAR_DOCUMENTS,
    TAR_QUERIES,
    TAR_SCHEMA,
    dataset_body,
    summary_from_logs,
    tar_bytes,
    wait_for,
)

BASE = "Marqo/ViT-B-32.laion2b_s34b_b79k"


def evaluate(client: TestClient, dataset_id: str, **body: Any) -> Any:
    payload = {"datasetId": dataset_id, "model": BASE, "hyperparameters": HYPER, **body}
    return client.post("/evaluation", json=payload, headers=AUTH)


def finished(client: TestClient, dataset_id: str, **body: Any) -> dict[str, Any]:
    r = evaluate(client, dataset_id, **body)
    assert r.status_code == 202, r.text
    return wait_for(client.get, f"/evaluation/{r.json()['evaluationId']}", ("Finished", "Failed"))


# -- envelope, auth, routing ------------------------------------------------------------


def test_unauthorized(client: TestClient) -> None:
    for headers in ({}, {"x-api-key": "wrong"}):
        r = client.get("/evaluation", headers=headers)
        assert (r.status_code, r.json()) == (401, {"message": "Unauthorized."})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/datasets/a/b/c"),
        ("PATCH", "/datasets"),
        ("PUT", "/evaluation"),
        ("GET", "/models/train"),
        ("GET", "/evaluation/x/unknown"),
        ("GET", "/marqtune/nothing"),
    ],
)
def test_invalid_request_method(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, headers=AUTH)
    assert (r.status_code, r.json()) == (400, {"message": "Invalid request method"})


@pytest.mark.inprocess
def test_prefixed_mount(client: TestClient) -> None:
    r = client.post("/marqtune/datasets", json=dataset_body(), headers=AUTH)
    assert r.json()["uploadUrl"].startswith("http://testserver/marqtune/datasets/")
    assert client.get("/marqtune/datasets", headers=AUTH).json()["datasets"][0]["datasetId"]


@pytest.mark.inprocess
def test_internal_error_is_the_seed_body(client: TestClient, monkeypatch) -> None:
    from evaldock.server.marqtune.provider import MarqtuneProvider

    async def boom(self, req):
        raise RuntimeError("bug")

    monkeypatch.setattr(MarqtuneProvider, "list_models", boom)
    r = client.get("/models", headers=AUTH)
    assert (r.status_code, r.json()) == (500, {"message": "Internal server error."})


def test_ids_are_validated(client: TestClient) -> None:
    for path, message in (
        ("/evaluation/not-a-uuid", "Invalid evaluation id"),
        ("/datasets/123", "Invalid dataset id"),
        ("/models/abc", "Invalid model id"),
    ):
        r = client.get(path, headers=AUTH)
        assert (r.status_code, r.json()) == (400, {"message": message})
    missing = str(uuid.uuid4())
    for path, message in (
        (f"/evaluation/{missing}", "evaluation not found"),
        (f"/datasets/{missing}", "dataset not found"),
        (f"/models/{missing}", "model not found"),
    ):
        r = client.get(path, headers=AUTH)
        assert (r.status_code, r.json()) == (404, {"message": message})


# -- datasets ---------------------------------------------------------------------------


def test_dataset_lifecycle(client: TestClient) -> None:
    created = client.post(
        "/datasets",
        json=dataset_body(imageDownloadHeaders={"Authorization": "secret"}, normalizeUrls=False),
        headers=AUTH,
    ).json()
    dataset_id, url = created["datasetId"], created["uploadUrl"]
    assert uuid.UUID(dataset_id)
    before = client.get(f"/datasets/{dataset_id}", headers=AUTH).json()
    assert (before["status"], before["secondaryStatus"]) == ("Initializing", "Uploading")
    # The client PUTs without its key: the URL is the credential.
    assert client.put(url, content=EVAL_CSV.encode()).json() == {
        "datasetId": dataset_id,
        "size": len(EVAL_CSV),
    }
    ready = wait_for(client.get, f"/datasets/{dataset_id}", ("Ready",))
    assert ready["secondaryStatus"] == "Ready"
    assert ready["imageDownloadHeaders"] == ["Authorization"]  # names only, never values
    assert ready["normalizeUrls"] is False
    assert (ready["rowCount"], ready["queryCount"], ready["documentCount"]) == (6, 4, 4)
    assert ready["fileFormat"] == "csv"
    listed = client.get("/datasets", headers=AUTH).json()["datasets"]
    assert [d["datasetId"] for d in listed] == [dataset_id]
    # A second upload to the same dataset is refused.
    assert client.put(url, content=b"x").status_code == 409

    assert client.delete(f"/datasets/{dataset_id}", headers=AUTH).status_code == 200
    gone = client.get(f"/datasets/{dataset_id}", headers=AUTH).json()
    assert (gone["status"], gone["secondaryStatus"]) == ("Deleted", "Deleted")
    assert client.get("/datasets", headers=AUTH).json()["datasets"] == []


def test_logs_from_is_inclusive_and_to_bounds(client: TestClient) -> None:
    dataset_id = ready_dataset(client)
    lines = client.get(f"/datasets/{dataset_id}/logs", headers=AUTH).json()
    assert [x["message"] for x in lines][-1] == "Dataset is ready"
    stamps = [x["timestamp"] for x in lines]
    assert stamps == sorted(set(stamps))  # strictly increasing
    second = stamps[1]
    tail = client.get(f"/datasets/{dataset_id}/logs?from={second}", headers=AUTH).json()
    assert tail == lines[1:]
    window = client.get(
        f"/datasets/{dataset_id}/logs?from={stamps[0]}&to={second}", headers=AUTH
    ).json()
    assert window == lines[:2]
    # The client's tailing: from = last + 1 gives nothing new.
    after = client.get(f"/datasets/{dataset_id}/logs?from={stamps[-1] + 1}", headers=AUTH)
    assert after.json() == []
    url = client.get(f"/datasets/{dataset_id}/logs/url", headers=AUTH).json()["downloadUrl"]
    text = client.get(url).text
    assert text.splitlines()[-1].endswith("Z Dataset is ready")


@pytest.mark.inprocess
def test_signed_urls_reject_tampering_and_expiry(client: TestClient, monkeypatch) -> None:
    created = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    url = created["uploadUrl"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    bad = client.put(f"{base}?expires={query['expires'][0]}&signature={'0' * 64}", content=b"a")
    assert bad.status_code == 403
    assert "signature does not match" in bad.json()["message"]
    assert client.put(base, content=b"a").status_code == 403
    # Another dataset's signature does not open this one.
    other = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    assert (
        client.put(
            other["uploadUrl"].replace(other["datasetId"], created["datasetId"]), content=b"a"
        ).status_code
        == 403
    )
    monkeypatch.setattr(time, "time", lambda: float(query["expires"][0]) + 1)
    expired = client.put(url, content=EVAL_CSV.encode())
    assert expired.status_code == 403
    assert "expired" in expired.json()["message"]


@pytest.mark.parametrize(
    ("csv", "reason"),
    [
        ("query,title,score\nred,red,1\n", "lacks columns named in dataSchema: image"),
        (
            "query,title,image,score\nred,red,a.png,high\n",
            "line 2: score column 'score' is 'high'; it must be a number",
        ),
        ("query,title,image,score\n", "has a header but no rows"),
        ("query,title,image,score\n,red,a.png,1\n", "line 2 has no value in any query column"),
    ],
)
def test_invalid_file_fails_with_a_reason(client: TestClient, csv: str, reason: str) -> None:
    created = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    client.put(created["uploadUrl"], content=csv.encode())
    failed = wait_for(client.get, f"/datasets/{created['datasetId']}", ("Failed", "Ready"))
    assert failed["status"] == failed["secondaryStatus"] == "Failed"
    assert reason in failed["failureReason"]
    logs = client.get(f"/datasets/{created['datasetId']}/logs", headers=AUTH).json()
    assert reason in logs[-1]["message"]


def test_create_dataset_errors(client: TestClient) -> None:
    cases = [
        (dataset_body(queryColumns=None), "queryColumns and resultColumns are required"),
        (dataset_body(queryColumns=["nope"]), "queryColumns names columns missing"),
        (dataset_body(resultColumns=["score"]), "resultColumns must be text or image_pointer"),
        (dataset_body(schema={**TAR_SCHEMA, "pid2": "doc_id"}), "one doc_id column"),
        (dataset_body(schema={"q": "vector"}), "dataSchema column types must be one of"),
        ({**dataset_body(), "datasetType": "other"}, "datasetType must be 'training'"),
    ]
    for body, message in cases:
        body = {k: v for k, v in body.items() if v is not None}
        r = client.post("/datasets", json=body, headers=AUTH)
        assert r.status_code == 400, body
        assert message in r.json()["message"]


def test_tar_dataset(client: TestClient) -> None:
    body = dataset_body(schema=TAR_SCHEMA)
    created = client.post("/datasets", json=body, headers=AUTH).json()
    data = tar_bytes({"queries.csv": TAR_QUERIES, "documents.jsonl": TAR_DOCUMENTS})
    client.put(created["uploadUrl"], content=data)
    ready = wait_for(client.get, f"/datasets/{created['datasetId']}", ("Ready", "Failed"))
    assert ready["status"] == "Ready", ready
    assert ready["fileFormat"] == "tar"
    # p3 is named by no query: it stays in the corpus as a distractor.
    assert (ready["rowCount"], ready["queryCount"], ready["documentCount"]) == (3, 2, 3)
    final = finished(client, created["datasetId"])
    assert final["status"] == "Finished"
    assert final["evaluationMetrics"]["summary"]["mrr@1000"] == [1.0]


def test_tar_needs_doc_id_and_both_files(client: TestClient) -> None:
    created = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    client.put(created["uploadUrl"], content=tar_bytes({"queries.csv": TAR_QUERIES}))
    failed = wait_for(client.get, f"/datasets/{created['datasetId']}", ("Failed",))
    assert "through a doc_id column" in failed["failureReason"]
    created = client.post("/datasets", json=dataset_body(schema=TAR_SCHEMA), headers=AUTH).json()
    client.put(created["uploadUrl"], content=tar_bytes({"queries.csv": TAR_QUERIES}))
    failed = wait_for(client.get, f"/datasets/{created['datasetId']}", ("Failed",))
    assert "missing documents.jsonl" in failed["failureReason"]
    created = client.post("/datasets", json=dataset_body(schema=TAR_SCHEMA), headers=AUTH).json()
    queries = TAR_QUERIES + "green hat,p9,1\n"
    client.put(
        created["uploadUrl"],
        content=tar_bytes({"queries.csv": queries, "documents.jsonl": TAR_DOCUMENTS}),
    )
    failed = wait_for(client.get, f"/datasets/{created['datasetId']}", ("Failed",))
    assert "queries.csv line 5: doc_id 'p9' is not in documents.jsonl" in failed["failureReason"]


def test_documents_without_doc_id_are_their_result_values(client: TestClient) -> None:
    # Two rows name the same (title, image): one document, so 4 documents for 6 rows.
    dataset_id = ready_dataset(client)
    assert client.get(f"/datasets/{dataset_id}", headers=AUTH).json()["documentCount"] == 4


# -- evaluations: the seed page's errors ------------------------------------------------


def test_evaluation_seed_errors(client: TestClient) -> None:
    def message(r: Any) -> tuple[int, str]:
        return r.status_code, r.json()["message"]

    training = client.post("/datasets", json=dataset_body("training"), headers=AUTH).json()
    assert message(evaluate(client, training["datasetId"])) == (400, NOT_EVALUATION_DATASET)

    waiting = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    assert message(evaluate(client, waiting["datasetId"])) == (400, DATASET_NOT_READY)

    broken = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    client.put(broken["uploadUrl"], content=b"query\nx\n")
    wait_for(client.get, f"/datasets/{broken['datasetId']}", ("Failed",))
    assert message(evaluate(client, broken["datasetId"])) == (400, FAILED_DATASET)

    ready = ready_dataset(client)
    missing = str(uuid.uuid4())
    assert message(evaluate(client, ready, model=f"{missing}/epoch_1")) == (
        400,
        f"Model with id {missing} not found",
    )
    assert message(evaluate(client, ready, model="not-a-model")) == (
        400,
        "Model with id not-a-model not found",
    )
    absent = str(uuid.uuid4())
    assert message(evaluate(client, absent)) == (400, f"Dataset with id {absent} not found")


def test_evaluation_hyperparameter_errors(client: TestClient) -> None:
    dataset_id = ready_dataset(client)
    cases = [
        ({**HYPER, "rightWeights": [1]}, "rightWeights has 1 values but rightKeys has 2 keys"),
        ({**HYPER, "leftWeights": [1, 2]}, "leftWeights has 2 values but leftKeys has 1 keys"),
        ({**HYPER, "rightKeys": ["image", "colour"]}, "Unknown columns in rightKeys: colour"),
        ({**HYPER, "leftKeys": ["title"]}, "leftKeys must be among the dataset's queryColumns"),
        ({**HYPER, "weightKey": "weight"}, "Unknown column in weightKey: weight"),
        ({**HYPER, "weightKey": "title"}, "weightKey must be a score column"),
        ({"rightKeys": ["title"]}, "hyperparameters.leftKeys is required"),
    ]
    for hyper, text in cases:
        r = evaluate(client, dataset_id, hyperparameters=hyper)
        assert r.status_code == 400, hyper
        assert text in r.json()["message"], r.json()
    r = evaluate(client, "nope")
    assert (r.status_code, r.json()["message"]) == (400, "Invalid dataset id")


# -- evaluations: lifecycle and metrics -------------------------------------------------


def test_evaluation_lifecycle(client: TestClient) -> None:
    dataset_id = ready_dataset(client)
    r = evaluate(client, dataset_id)
    assert r.status_code == 202
    evaluation_id = r.json()["evaluationId"]
    assert list(r.json()) == ["evaluationId"] and uuid.UUID(evaluation_id)
    final = wait_for(client.get, f"/evaluation/{evaluation_id}", ("Finished", "Failed"))
    assert (final["status"], final["secondaryStatus"]) == ("Finished", "Finished"), final
    assert final["hyperparameters"] == HYPER
    metrics = final["evaluationMetrics"]
    assert set(metrics) == {"mAP", "ndcg", "precision", "recall", "mrr", "hole", "acc", "summary"}
    assert list(metrics["ndcg"]) == [f"NDCG@{k}" for k in gcl.GCL_KS]

    logs = client.get(f"/evaluation/{evaluation_id}/logs", headers=AUTH).json()
    summary = summary_from_logs(logs)
    assert summary == metrics["summary"]
    assert list(summary) == ["mAP@1000", "mrr@1000", "NDCG@10", "mERR", "mRBP7", "mRBP8", "mRBP9"]
    assert logs[-1]["message"] == "Evaluation finished"

    url = client.get(f"/evaluation/{evaluation_id}/download/url", headers=AUTH).json()
    downloaded = client.get(url["downloadUrl"])  # no key
    assert downloaded.status_code == 200
    assert downloaded.json() == metrics
    log_url = client.get(f"/evaluation/{evaluation_id}/logs/url", headers=AUTH).json()
    assert "Evaluation finished" in client.get(log_url["downloadUrl"]).text

    listed = client.get("/evaluation", headers=AUTH).json()["evaluations"]
    assert [e["evaluationId"] for e in listed] == [evaluation_id]
    assert "evaluationMetrics" not in listed[0]

    assert client.delete(f"/evaluation/{evaluation_id}", headers=AUTH).status_code == 200
    gone = client.get(f"/evaluation/{evaluation_id}", headers=AUTH).json()
    assert (gone["status"], gone["secondaryStatus"]) == ("Deleted", "Deleted")
    assert "evaluationMetrics" not in gone
    assert client.get(url["downloadUrl"]).status_code == 404
    assert client.get("/evaluation", headers=AUTH).json()["evaluations"] == []


def test_perfect_ranking_scores_one(client: TestClient) -> None:
    csv = "query,title,image,score\n" + "".join(
        f"{w} item,{w} item,img/{w}.png,1\n" for w in ("red", "blue", "green", "black", "white")
    )
    dataset_id = ready_dataset(client, csv)
    hyper = {"leftKeys": ["query"], "rightKeys": ["title"], "rightWeights": [1]}
    final = finished(client, dataset_id, hyperparameters=hyper)
    summary = final["evaluationMetrics"]["summary"]
    assert summary["mAP@1000"] == summary["mrr@1000"] == summary["NDCG@10"] == [1.0]
    assert final["evaluationMetrics"]["precision"]["P@1"] == 1.0


def test_metrics_match_an_independent_computation(client: TestClient) -> None:
    """The served numbers equal GCL's steps done by hand: mock embeddings, brute-force
    cosine over every document, the dict-based (pytrec_eval-style) metrics path."""
    dataset_id = ready_dataset(client)
    final = finished(client, dataset_id)

    rows = [line.split(",") for line in EVAL_CSV.strip().splitlines()[1:]]
    ranker = MockRanker({})
    ranker.load(BASE)
    rel = gcl.scale_relevance([float(r[3]) for r in rows])
    qids = [gcl.make_query_id([r[0]]) for r in rows]
    docs: dict[str, dict[str, str]] = {}
    row_docs = []
    from evaldock.server.marqtune.datasets import derived_doc_id

    for r in rows:
        doc_id = derived_doc_id([r[1], r[2]])
        docs.setdefault(doc_id, {"title": r[1], "image": r[2]})
        row_docs.append(doc_id)
    tests = gcl.sample_test_queries(qids, rel, top_q=len(set(qids)))
    truth = gcl.build_ground_truth(qids, row_docs, rel, tests)
    kinds = {"title": "text", "image": "image"}
    qrows = [{"query": next(r[0] for r in rows if gcl.make_query_id([r[0]]) == q)} for q in tests]
    qv = ranker.embed_fields(qrows, ["query"], [1.0], kinds)
    dv = ranker.embed_fields(list(docs.values()), ["image", "title"], [0.9, 0.1], kinds)
    scores = qv @ dv.T
    ids = list(docs)
    run = {q: {ids[j]: float(scores[i, j]) for j in range(len(ids))} for i, q in enumerate(tests)}
    expected = gcl.rounded(gcl.evaluate_run(truth, run))
    got = final["evaluationMetrics"]
    for group in ("mAP", "ndcg", "precision", "recall", "mrr"):
        assert got[group] == pytest.approx(expected[group], abs=1e-9), group
    for key in ("mERR", "mRBP7", "mRBP8", "mRBP9"):
        assert got["summary"][key] == pytest.approx(expected["summary"][key], abs=1e-9)
    assert np.isfinite(got["summary"]["mERR"])


def test_legacy_body_is_accepted(client: TestClient) -> None:
    dataset_id = ready_dataset(client)
    final = finished(
        client, dataset_id, model="ViT-B-32", checkpoint="laion2b_s34b_b79k", modelType="open_clip"
    )
    assert final["status"] == "Finished"
    assert (final["model"], final["checkpoint"]) == ("ViT-B-32", "laion2b_s34b_b79k")


def test_download_url_needs_a_finished_evaluation(client: TestClient) -> None:
    dataset_id = ready_dataset(client)
    evaluation_id = finished(client, dataset_id)["evaluationId"]
    client.delete(f"/evaluation/{evaluation_id}", headers=AUTH)
    r = client.get(f"/evaluation/{evaluation_id}/download/url", headers=AUTH)
    assert r.status_code == 400
    assert r.json()["message"] == (
        f"Evaluation {evaluation_id} has no results to download: its status is Deleted"
    )


def test_each_key_is_a_tenant(make_client) -> None:
    client = make_client(**{"auth.marqtune.keys": ["test", "other"]})
    other = {"x-api-key": "other"}
    dataset_id = ready_dataset(client)
    evaluation_id = finished(client, dataset_id)["evaluationId"]
    assert client.get("/datasets", headers=other).json() == {"datasets": []}
    assert client.get("/evaluation", headers=other).json() == {"evaluations": []}
    assert client.get(f"/datasets/{dataset_id}", headers=other).status_code == 404
    assert client.get(f"/evaluation/{evaluation_id}", headers=other).status_code == 404
    r = client.post(
        "/evaluation",
        json={"datasetId": dataset_id, "model": BASE, "hyperparameters": HYPER},
        headers=other,
    )
    assert r.json()["message"] == f"Dataset with id {dataset_id} not found"


# -- models -----------------------------------------------------------------------------


def _checkpoints(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        (folder / f"epoch_{i}.pt").write_bytes(f"weights {i}".encode())
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_configured_model(make_client, tmp_path: Path) -> None:
    folder = _checkpoints(tmp_path / "run" / "checkpoints", 3)
    model_id = str(uuid.uuid4())
    client = make_client(
        **{
            "marqtune.models": {
                "my-tuned": {"base_model": "ViT-B-32", "checkpoints": str(folder), "id": model_id},
                BASE: str(tmp_path / "offline.bin"),
            }
        }
    )
    listed = client.get("/models", headers=AUTH).json()["models"]
    assert [m["modelId"] for m in listed] == [model_id]
    model = client.get(f"/models/{model_id}", headers=AUTH).json()
    assert model["checkpoints"] == ["epoch_1", "epoch_2", "epoch_3"]
    assert (model["status"], model["secondaryStatus"], model["source"]) == (
        "Finished",
        "Finished",
        "config",
    )
    assert model["checkpoints"][-1] == "epoch_3"  # Marqo's walkthrough reads [-1]

    dataset_id = ready_dataset(client)
    r = evaluate(client, dataset_id, model=f"{model_id}/epoch_9")
    assert (r.status_code, r.json()["message"]) == (
        400,
        "Invalid checkpoint. Available checkpoints: epoch_1, epoch_2, epoch_3",
    )
    final = finished(client, dataset_id, model=f"{model_id}/epoch_2")
    assert final["status"] == "Finished", final
    assert (final["modelId"], final["checkpoint"]) == (model_id, "epoch_2")
    assert "pretrained:" + str(folder.resolve() / "epoch_2.pt") in final["rankerSignature"]
    # The legacy form and the model's name work too.
    legacy = finished(
        client, dataset_id, model=model_id, checkpoint="epoch_1", modelType="marqtuned"
    )
    assert legacy["checkpoint"] == "epoch_1"
    by_name = finished(client, dataset_id, model="my-tuned")
    assert by_name["checkpoint"] == "epoch_3"
    # The configured base-model override loads the local file.
    base = finished(client, dataset_id)
    assert f"pretrained:{tmp_path / 'offline.bin'}" in base["rankerSignature"]

    url = client.get(f"/models/{model_id}/download/url?checkpoint=epoch_2", headers=AUTH).json()
    assert urlsplit(url["downloadUrl"]).path.endswith("/epoch_2.pt")
    assert client.get(url["downloadUrl"]).content == b"weights 2"
    latest = client.get(f"/models/{model_id}/download/url", headers=AUTH).json()["downloadUrl"]
    assert client.get(latest).content == b"weights 3"
    bad = client.get(f"/models/{model_id}/download/url?checkpoint=epoch_7", headers=AUTH)
    assert bad.status_code == 400

    released = client.post(f"/models/{model_id}/released-checkpoints/epoch_2", headers=AUTH)
    assert released.json()["checkpoint"] == "epoch_2"
    assert client.get(f"/models/{model_id}", headers=AUTH).json()["releasedCheckpoints"] == [
        "epoch_2"
    ]
    logs = client.get(f"/models/{model_id}/logs", headers=AUTH).json()
    assert logs[-1]["message"] == "Checkpoint epoch_2 released"
    log_url = client.get(f"/models/{model_id}/logs/url", headers=AUTH).json()["downloadUrl"]
    assert "Configured in [marqtune.models]" in client.get(log_url).text

    r = client.delete(f"/models/{model_id}", headers=AUTH)
    assert r.status_code == 400 and "[marqtune.models]" in r.json()["message"]


def test_model_with_missing_files_is_failed(make_client, tmp_path: Path) -> None:
    client = make_client(
        **{
            "marqtune.models": {
                "lost": {"base_model": "ViT-B-32", "checkpoints": {"epoch_1": str(tmp_path / "x")}}
            }
        }
    )
    model = client.get("/models", headers=AUTH).json()["models"][0]
    assert model["status"] == "Failed"
    assert "checkpoint files not found: epoch_1" in model["failureReason"]
    dataset_id = ready_dataset(client)
    r = evaluate(client, dataset_id, model=f"{model['modelId']}/epoch_1")
    assert r.status_code == 400 and "is missing its file" in r.json()["message"]


@pytest.mark.inprocess  # the CLI writes to the in-process server's data dir
def test_cli_registered_model(client: TestClient, tmp_path: Path, capsys) -> None:
    folder = _checkpoints(tmp_path / "ckpts")
    data = tmp_path / "data"
    argv = ["--data", str(data), "add-model", "tuned", "--base-model", "ViT-B-32"]
    assert marqtune_cli.main([*argv, "--checkpoints", str(folder), "--api-key", "test"]) == 0
    printed = capsys.readouterr().out
    model_id = printed.split()[2]
    assert f'model="{model_id}/epoch_2"' in printed
    # Registered while the server runs: visible at once, to this key.
    model = client.get(f"/models/{model_id}", headers=AUTH).json()
    assert (model["source"], model["checkpoints"]) == ("registered", ["epoch_1", "epoch_2"])
    assert (
        "Registered 'tuned'"
        in client.get(f"/models/{model_id}/logs", headers=AUTH).json()[0]["message"]
    )
    assert marqtune_cli.main(["--data", str(data), "list-models"]) == 0
    assert model_id in capsys.readouterr().out

    shared = [*argv, "--checkpoint", f"epoch_4={folder / 'epoch_1.pt'}"]
    assert marqtune_cli.main(shared) == 0
    shared_id = capsys.readouterr().out.split()[2]
    r = client.delete(f"/models/{shared_id}", headers=AUTH)
    assert r.status_code == 400 and "remove-model" in r.json()["message"]
    assert marqtune_cli.main(["--data", str(data), "remove-model", shared_id]) == 0

    assert client.delete(f"/models/{model_id}", headers=AUTH).status_code == 200
    assert client.get(f"/models/{model_id}", headers=AUTH).status_code == 404
    assert folder.joinpath("epoch_1.pt").exists()  # the user's files stay

    assert marqtune_cli.main([*argv, "--checkpoint", "final=/x.pt"]) == 2
    assert "epoch_N" in capsys.readouterr().err
    assert marqtune_cli.main([*argv, "--checkpoints", str(folder), "--api-key", "nope"]) == 2


def test_training_is_out_of_scope(client: TestClient) -> None:
    body = {
        "datasetId": str(uuid.uuid4()),
        "modelName": "m",
        "baseModel": BASE,
        "instanceType": "marqtune.basic",
        "hyperparameters": {},
    }
    r = client.post("/models/train", json=body, headers=AUTH)
    assert (r.status_code, r.json()) == (400, {"message": TRAINING_OUT_OF_SCOPE})


@pytest.mark.inprocess
def test_failed_evaluation_says_why(client: TestClient, monkeypatch) -> None:
    # The ranker lives in the worker process: the task that breaks it goes there instead.
    monkeypatch.setattr(marqtune_jobs, "evaluate", tasks.evaluate_with_a_broken_image)
    dataset_id = ready_dataset(client)
    evaluation_id = evaluate(client, dataset_id).json()["evaluationId"]
    running = wait_for(client.get, f"/evaluation/{evaluation_id}", ("Running", "Failed"))
    assert running["secondaryStatus"] == running["status"] == "Running"
    failed = wait_for(client.get, f"/evaluation/{evaluation_id}", ("Failed",))
    assert failed["secondaryStatus"] == "Failed"
    assert failed["failureReason"] == "cannot decode image img/x.png: truncated file"
    logs = client.get(f"/evaluation/{evaluation_id}/logs", headers=AUTH).json()
    assert logs[-1]["message"] == "Evaluation failed: " + failed["failureReason"]
    assert "evaluationMetrics" not in failed


def test_uploads_have_their_own_size_limit(make_client) -> None:
    client = make_client(**{"server.max_body_bytes": 400, "marqtune.max_upload_bytes": 2000})
    created = client.post("/datasets", json=dataset_body(), headers=AUTH).json()
    big_json = client.post("/datasets", json=dataset_body(datasetName="x" * 500), headers=AUTH)
    assert big_json.status_code == 413
    assert client.put(created["uploadUrl"], content=b"q" * 2001).status_code == 413
    csv = EVAL_CSV + "".join(f"q{i},t{i},i{i}.png,1\n" for i in range(40))
    assert 400 < len(csv) <= 2000
    assert client.put(created["uploadUrl"], content=csv.encode()).status_code == 200
