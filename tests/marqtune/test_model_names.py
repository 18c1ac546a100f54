"""Which model names an evaluation may name: the same answers in mock and real mode.

The names are resolved in the API process by one resolver (server/marqtune/resolution.py
over the ranker catalogue's ``is_known``) whatever the mode; only the engine that then
runs the evaluation differs. These tests post one list of names to both modes and compare
the answers, and run the accepted ones on a tiny open_clip model to the same status.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.engines.ranker.catalog import is_hf_repo_id, is_known
from evaldock.server.app import create_app
from evaldock.server.load import load_settings

from .conftest import ready_dataset
from .helpers import AUTH, HYPER, wait_for

MISSING = "6a0f3c1e-59d4-4c1b-9d35-0b7f1c2e8a41"  # a UUID no model has
# (request body fields, the 400's message); "{id}" is the tiny model's id.
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"model": "model_id/epoch_4"}, "Model with id model_id not found"),  # the docs' spelling
    ({"model": "my-tuned/epoch_1"}, "Model with id my-tuned not found"),
    ({"model": f"{MISSING}/epoch_1"}, f"Model with id {MISSING} not found"),
    ({"model": "hf-hub:/etc/passwd"}, "Model with id hf-hub:/etc/passwd not found"),
    ({"model": "hf-hub:../../etc/passwd"}, "Model with id hf-hub:../../etc/passwd not found"),
    ({"model": "hf-hub:org/repo/extra"}, "Model with id hf-hub:org/repo/extra not found"),
    ({"model": "hf-hub:org/re..po"}, "Model with id hf-hub:org/re..po not found"),
    ({"model": "hf-hub:"}, "Model with id hf-hub: not found"),
    ({"model": "/etc/passwd"}, "Model with id /etc/passwd not found"),
    ({"model": "org/repo\u202e"}, "Model with id org/repo\u202e not found"),
    ({"model": "local-dir:/etc"}, "Model with id local-dir:/etc not found"),
    ({"model": "ViT-B-32"}, "Model with id ViT-B-32 not found"),  # no weights named
    ({"model": "not-a-model"}, "Model with id not-a-model not found"),
    (
        {"model": "/etc/passwd", "modelType": "hugging_face"},
        "Model with id hf-hub:/etc/passwd not found",
    ),
    (
        {"model": "ViT-B-32", "checkpoint": "../../x.pt", "modelType": "open_clip"},
        "Model with id ViT-B-32 not found",
    ),
    ({"model": "model_id", "modelType": "marqtuned"}, "Model with id model_id not found"),
    ({"model": "{id}/epoch_9"}, "Invalid checkpoint. Available checkpoints: epoch_1, epoch_2"),
]
# Accepted in both modes; these run on the tiny model's weights in both.
TINY = [
    {"model": "{id}/epoch_1"},
    {"model": "{id}"},  # no checkpoint named: the latest
    {"model": "tiny/epoch_2"},  # a registered model by name
    {"model": "tiny", "modelType": "marqtuned", "checkpoint": "epoch_1"},  # the legacy body
]
# Accepted in both modes without weights at hand: mock mode needs none, real mode fails the
# job saying how to supply them (downloads are off here).
NEEDS_WEIGHTS = [
    {"model": "Marqo/ViT-B-32.laion2b_s34b_b79k"},
    {"model": "hf-hub:Marqo/marqo-ecommerce-embeddings-B"},
    {"model": "Marqo/marqo-ecommerce-embeddings-B"},
]


def _fill(fields: dict[str, Any], model_id: str) -> dict[str, Any]:
    return {k: v.replace("{id}", model_id) if isinstance(v, str) else v for k, v in fields.items()}


# Text only: the tiny CLIP then needs no image files in real mode.
TEXT_ONLY = {**HYPER, "rightKeys": ["title"], "rightWeights": [1]}


def _post(client: TestClient, dataset_id: str, fields: dict[str, Any]) -> Any:
    body = {"datasetId": dataset_id, "hyperparameters": TEXT_ONLY, **fields}
    return client.post("/evaluation", json=body, headers=AUTH)


def test_refused_names_get_the_vendors_400(client: TestClient) -> None:
    """Mock mode (and a live server): names no engine could load are the vendor's 400."""
    dataset_id = ready_dataset(client)
    for fields, message in REFUSED:
        if "{id}" in fields["model"]:
            continue  # needs the tiny model (the two-mode test below)
        r = _post(client, dataset_id, fields)
        assert (r.status_code, r.json()) == (400, {"message": message}), fields
    assert client.get("/evaluation", headers=AUTH).json()["evaluations"] == []


def test_the_catalogue_knows_hub_names_only_as_the_hub_spells_them() -> None:
    for repo in ("gpt2", "Marqo/marqo-ecommerce-embeddings-B", "laion/CLIP-ViT-B-32", "_x/y.z"):
        assert is_hf_repo_id(repo) and is_known(f"hf-hub:{repo}"), repo
    for repo in ("/etc/passwd", "a/b/c", "..", "a/..", "a..b", "a--b", "x.git", "-a", "a.", ""):
        assert not is_hf_repo_id(repo), repo
    assert not is_known("hf-hub:/etc/passwd") and not is_known("hf-hub:a/b/c")
    assert not is_hf_repo_id("a" * 97) and is_hf_repo_id("a" * 96)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    pytest.importorskip("open_clip")
    from evaldock.engines.ranker.testing import build_tiny_clip

    folder = tmp_path_factory.mktemp("tiny")
    name, checkpoint = build_tiny_clip(folder)
    for epoch in ("epoch_1", "epoch_2"):
        shutil.copy(checkpoint, folder / f"{epoch}.pt")
    return name, folder


def _app(tmp_path: Path, mode: str, tiny: tuple[str, Path], model_id: str) -> TestClient:
    name, folder = tiny
    settings = load_settings(
        None,
        {
            "server.data": str(tmp_path / mode),
            "server.mode": mode,
            "server.surfaces": "marqtune",
            "judge.impl": "mock",
            "engines.ranker.device": "cpu",
            "engines.ranker.allow_download": False,
            "marqtune.models": {
                "tiny": {"id": model_id, "base_model": name, "checkpoints": str(folder)}
            },
        },
        environ={},
    )
    return TestClient(create_app(settings))


@pytest.fixture
def both_modes(tmp_path: Path, tiny: tuple[str, Path]) -> Iterator[dict[str, Any]]:
    model_id = str(uuid.uuid4())
    with (
        _app(tmp_path, "mock", tiny, model_id) as mock,
        _app(tmp_path, "real", tiny, model_id) as real,
    ):
        yield {"mock": mock, "real": real, "id": model_id}


def _answers(client: TestClient, model_id: str) -> tuple[list[Any], list[str], list[str]]:
    dataset_id = ready_dataset(client)
    refused = []
    for fields, _ in REFUSED:
        r = _post(client, dataset_id, _fill(fields, model_id))
        refused.append((r.status_code, r.json()))
    accepted = []
    for fields in (*TINY, *NEEDS_WEIGHTS):
        r = _post(client, dataset_id, _fill(fields, model_id))
        assert r.status_code == 202, (fields, r.text)
        accepted.append(r.json()["evaluationId"])
    return refused, accepted[: len(TINY)], accepted[len(TINY) :]


@pytest.mark.inprocess
def test_mock_and_real_mode_answer_model_names_alike(both_modes: dict[str, Any]) -> None:
    model_id = both_modes["id"]
    expected = [(400, {"message": message.replace("{id}", model_id)}) for _, message in REFUSED]
    answers = {mode: _answers(both_modes[mode], model_id) for mode in ("mock", "real")}
    assert answers["mock"][0] == expected
    assert answers["real"][0] == expected
    for mode, (_, tiny_runs, _) in answers.items():
        client = both_modes[mode]
        for evaluation_id in tiny_runs:
            done = wait_for(
                client.get, f"/evaluation/{evaluation_id}", ("Finished", "Failed"), timeout=120
            )
            assert done["status"] == "Finished", (mode, done.get("failureReason"))
            assert done["modelId"] == model_id
            assert f"ranker:{'clip' if mode == 'real' else 'mock'}" in done["rankerSignature"]
    # No weights at hand: mock mode needs none; real mode says how to supply them.
    mock_client, real_client = both_modes["mock"], both_modes["real"]
    for evaluation_id in answers["mock"][2]:
        done = wait_for(mock_client.get, f"/evaluation/{evaluation_id}", ("Finished", "Failed"))
        assert done["status"] == "Finished", done
    for evaluation_id in answers["real"][2]:
        done = wait_for(
            real_client.get, f"/evaluation/{evaluation_id}", ("Finished", "Failed"), timeout=120
        )
        assert done["status"] == "Failed", done
        assert "downloads are off" in done["failureReason"], done
