"""The Oxen surface over real HTTP: the official ``oxenai`` client end to end (repository
API plus evaluations over plain HTTP), and SIGKILL in the middle of an evaluation."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.serverproc import ServerProcess

HERE = Path(__file__).parent


def run_walk(python: str, server: ServerProcess, tmp: Path) -> dict[str, Any]:
    home = tmp / "home"
    home.mkdir()
    out = tmp / "walk.json"
    proc = subprocess.run(
        [python, str(HERE / "oxen_client_walk.py"), f"127.0.0.1:{server.port}", str(tmp), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        # The client keeps its token and user in ~/.config/oxen: a scratch HOME.
        env={**os.environ, "HOME": str(home)},
    )
    assert proc.returncode == 0, f"client walk failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text())


def test_official_client_walk(server: ServerProcess, clients_python: str, tmp_path: Path) -> None:
    seen = run_walk(clients_python, server, tmp_path)
    assert (seen["exists_before"], seen["exists_after"]) == (False, True)
    assert (seen["file_exists"], seen["missing_exists"]) == (True, False)
    assert seen["ls"] == ["README.md", "data.parquet"]
    assert seen["log"] == ["add data", "Initial commit"]
    assert seen["text_create"][0] == 200
    created = seen["text_create"][1]
    assert (created["status"], created["status_message"]) == ("success", "resource_found")
    assert created["evaluation"]["status"] == "queued"
    text, emb = seen["text"], seen["embeddings"]
    assert text["status"] == "completed", text
    assert text["progress"] == {"processed": 4, "total": 4}
    assert text["closing_commit"]["message"] == "predictions"
    assert text["tokens_used"] > 0
    assert emb["status"] == "completed", emb
    assert emb["model_ran"] == "evaldock-mock-embedder"
    # Both columns landed on the target branch; every other column is intact.
    assert seen["results_columns"] == ["text", "label", "score", "prediction", "embedding"]
    assert all(p.startswith("mock answer") for p in seen["results_prediction"])
    assert seen["results_embedding_len"] == [384] * 4
    assert seen["intact"] is True
    assert seen["download_columns"] == seen["results_columns"]
    # The source branch never changed; a sample committed nothing (no branch made).
    assert seen["main_columns"] == ["text", "label", "score"]
    assert seen["main_untouched"] is True
    assert seen["sample"]["status"] == "completed"
    assert seen["sample"]["closing_commit"] is None
    assert seen["branches"] == ["main", "results"]
    assert (seen["branch_exists"], seen["branch_after_delete"]) == (True, False)
    assert seen["log_results"] == ["embeddings", "predictions", "add data", "Initial commit"]
    status, body = seen["bad_placeholder"]
    assert status == 400 and "{txet}" in body["status_description"]
    assert "'text', 'label', 'score'" in body["status_description"]
