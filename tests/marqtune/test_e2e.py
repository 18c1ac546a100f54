"""The Marqtune surface over real HTTP (``evaldock serve`` processes): the official
``marqtune`` client end to end in mock and real mode, and restart survival."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ServerProcess

from .helpers import AUTH, EVAL_CSV, HYPER, dataset_body, summary_from_logs, wait_for

HERE = Path(__file__).parent


def run_walk(python: str, url: str, dataset: Path, model: str, tmp: Path, timeout=240) -> Any:
    out = tmp / "walk.json"
    proc = subprocess.run(
        [python, str(HERE / "marqtune_client_walk.py"), url, str(dataset), model, str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"client walk failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text()), proc.stdout


def check_walk(seen: dict[str, Any], stdout: str) -> None:
    assert seen["dataset"]["status"] == "Ready"
    evaluation = seen["evaluation"]
    assert evaluation["status"] == "Finished", evaluation
    summary = summary_from_logs(seen["logs"])
    assert summary == evaluation["evaluationMetrics"]["summary"]
    assert seen["download"] == evaluation["evaluationMetrics"]
    assert "Evaluation finished" in seen["log_file"]
    assert [d["datasetId"] for d in seen["datasets"]["datasets"]] == [evaluation["datasetId"]]
    assert seen["evaluations"]["evaluations"][0]["evaluationId"] == evaluation["evaluationId"]
    assert seen["error"][1] == "Model with id 00000000-0000-4000-8000-000000000000 not found"
    assert seen["after_delete"]["status"] == "Deleted"
    assert "Model training is not available in evaldock" in seen["train_error"][1]
    # What the client printed while it waited: statuses, then every log line once.
    assert stdout.count("Dataset is ready") == 1
    assert stdout.count("{'mAP@1000': ") == 1
    assert "Unknown status" not in stdout


def test_official_client_mock_mode(server: ServerProcess, clients_python: str, tmp_path) -> None:
    dataset = tmp_path / "eval.csv"
    dataset.write_text(EVAL_CSV)
    seen, stdout = run_walk(
        clients_python, server.url, dataset, "Marqo/ViT-B-32.laion2b_s34b_b79k", tmp_path
    )
    check_walk(seen, stdout)
    assert "|ranker:mock|" in seen["evaluation"]["rankerSignature"]


def test_official_client_under_the_prefix(
    server: ServerProcess, clients_python: str, tmp_path
) -> None:
    dataset = tmp_path / "eval.csv"
    dataset.write_text(EVAL_CSV)
    seen, stdout = run_walk(
        clients_python, server.url + "/marqtune", dataset, "ViT-B-32/laion2b_s34b_b79k", tmp_path
    )
    check_walk(seen, stdout)


def test_official_client_real_mode_tiny_clip(clients_python: str, tmp_path: Path) -> None:
    """The CLIP ranker on a tiny open_clip model registered as a local marqtuned model
    (built here from a config; nothing is downloaded), with real image files."""
    pytest.importorskip("open_clip")
    from PIL import Image

    from evaldock.engines.ranker.testing import build_tiny_clip

    folder = tmp_path / "tiny"
    name, checkpoint = build_tiny_clip(folder)
    shutil.copy(checkpoint, folder / "epoch_1.pt")
    shutil.copy(checkpoint, folder / "epoch_2.pt")
    images = tmp_path / "images"
    images.mkdir()
    colours = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}
    for colour, rgb in colours.items():
        Image.new("RGB", (40, 40), rgb).save(images / f"{colour}.png")
    rows = ["query,title,image,score"]
    for colour in colours:
        rows.append(f"{colour} shirt,{colour} shirt,{images / colour}.png,5")
        rows.append(f"{colour} shirt,plain shirt,{images / 'red'}.png,1")
    dataset = tmp_path / "eval.csv"
    dataset.write_text("\n".join(rows) + "\n")
    model_id = str(uuid.uuid4())
    config = tmp_path / "evaldock.toml"
    config.write_text(
        f"""
[judge]
impl = "mock"

[engines.ranker]
device = "cpu"

[marqtune.models.tiny]
id = "{model_id}"
base_model = "{name}"
checkpoints = "{folder}"
"""
    )
    with ServerProcess(tmp_path / "data", mode="real", config=config) as server:
        models = httpx.get(f"{server.url}/models", headers=AUTH).json()["models"]
        assert models[0]["checkpoints"] == ["epoch_1", "epoch_2"]
        seen, stdout = run_walk(
            clients_python, server.url, dataset, f"{model_id}/epoch_2", tmp_path, timeout=280
        )
    check_walk(seen, stdout)
    evaluation = seen["evaluation"]
    assert evaluation["rankerSignature"].startswith("metrics:gcl-eval_gs_v1")
    assert "ranker:clip" in evaluation["rankerSignature"]
    assert "epoch_2.pt" in evaluation["rankerSignature"]
    assert (evaluation["modelId"], evaluation["checkpoint"]) == (model_id, "epoch_2")
    assert 0.0 <= evaluation["evaluationMetrics"]["summary"]["NDCG@10"][0] <= 1.0
    assert seen["model"]["checkpoints"][-1] == "epoch_2"
    assert seen["model_download_size"] == (folder / "epoch_2.pt").stat().st_size
    assert seen["released"]["checkpoint"] == "epoch_2"
    assert seen["model_logs"][-1]["message"] == "Checkpoint epoch_2 released"


def test_restart_keeps_datasets_evaluations_and_signed_urls(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        base = server.url
        created = httpx.post(f"{base}/datasets", json=dataset_body(), headers=AUTH).json()
        dataset_id = created["datasetId"]
        server.stop()
        server.start()
        # An upload URL handed out before the restart still works after it.
        put = httpx.put(created["uploadUrl"], content=EVAL_CSV.encode())
        assert put.status_code == 200, put.text
        ready = wait_for(httpx.get, f"{base}/datasets/{dataset_id}", ("Ready",))
        body = {"datasetId": dataset_id, "model": "ViT-B-32/openai", "hyperparameters": HYPER}
        evaluation_id = httpx.post(f"{base}/evaluation", json=body, headers=AUTH).json()[
            "evaluationId"
        ]
        final = wait_for(httpx.get, f"{base}/evaluation/{evaluation_id}", ("Finished",))
        logs = httpx.get(f"{base}/evaluation/{evaluation_id}/logs", headers=AUTH).json()
        download = httpx.get(f"{base}/evaluation/{evaluation_id}/download/url", headers=AUTH)

        server.stop()
        server.start()
        assert httpx.get(f"{base}/datasets/{dataset_id}", headers=AUTH).json() == ready
        assert httpx.get(f"{base}/evaluation/{evaluation_id}", headers=AUTH).json() == final
        assert httpx.get(f"{base}/evaluation/{evaluation_id}/logs", headers=AUTH).json() == logs
        results = httpx.get(download.json()["downloadUrl"])
        assert results.json() == final["evaluationMetrics"]
        assert summary_from_logs(logs) == final["evaluationMetrics"]["summary"]
    finally:
        server.stop()
