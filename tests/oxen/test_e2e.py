"""The Oxen surface over real HTTP: the official ``oxenai`` client end to end (repository
API plus evaluations over plain HTTP), and SIGKILL in the middle of an evaluation."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from tests.serverproc import ServerProcess

AUTH = {"Authorization": "Bearer test"}

HERE = Path(__file__).parent


def run_walk(
    python: str, server: ServerProcess, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    home = tmp / "home"
    home.mkdir()
    out = tmp / "walk.json"
    proc = subprocess.run(
        [
            python,
            str(HERE / "oxen_client_walk.py"),
            f"127.0.0.1:{server.port}",
            str(tmp),
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # The client keeps its token and user in ~/.config/oxen: a scratch HOME.
        env={**os.environ, "HOME": str(home), **(env or {})},
    )
    assert proc.returncode == 0, f"client walk failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text())


def test_folder_download_in_chunks(
    server: ServerProcess, clients_python: str, tmp_path: Path
) -> None:
    # OXEN_STREAM_SEGMENT_SIZE (the client's 10 MiB threshold, lowered the way Oxen's own
    # tests do) sends c.bin's 256 bytes through GET .../chunk in 100-byte ranges.
    seen = run_walk(
        clients_python, server, tmp_path, "folder", env={"OXEN_STREAM_SEGMENT_SIZE": "100"}
    )
    assert seen["folder_download"] == "downloaded", seen
    assert seen["folder_equal"] is True


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
    # A nested folder comes back byte for byte through download_zip and download.
    assert seen["zip_names"] == ["a.txt", "sub/b.csv", "sub/deep/c.bin"]
    assert seen["zip_equal"] is True
    assert seen["folder_download"] == "downloaded"
    assert seen["folder_names"] == ["a.txt", "sub/b.csv", "sub/deep/c.bin"]
    assert seen["folder_equal"] is True
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


def _evaluation(client: httpx.Client, base: str, eval_id: str) -> dict[str, Any]:
    r = client.get(f"{base}/evaluations/{eval_id}", headers=AUTH)
    assert r.status_code == 200, r.text
    evaluation: dict[str, Any] = r.json()["evaluation"]
    return evaluation


def test_sigkill_during_an_evaluation(tmp_path: Path) -> None:
    """Killed mid-run: after restart the evaluation completes (or fails with a reason),
    and every branch points at a commit whose blobs are all on disk."""
    data = tmp_path / "data"
    config = tmp_path / "evaldock.toml"
    # 25 ms per generation: 200 rows take ~5 s (batch_size 20: progress every 20 rows).
    config.write_text("[engines.judge]\ndelay_ms = 25\n[oxen]\nbatch_size = 20\nconcurrency = 4\n")
    base = "/api/repos/ox/kill"
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(200)]}), buf)
    with ServerProcess(data, config=config) as server, httpx.Client(base_url=server.url) as c:
        c.post("/api/repos", json={"namespace": "ox", "name": "kill"}, headers=AUTH)
        r = c.put(
            f"{base}/file/main/",
            files=[("files[]", ("d.parquet", buf.getvalue()))],
            data={"name": "Ox", "email": "ox@x", "message": "add"},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        r = c.post(
            f"{base}/evaluations/main/d.parquet",
            json={
                "prompt": "{text}",
                "type": "text",
                "model": "gpt-4o-mini",
                "target_column": "out",
                "target_branch": "results",
            },
            headers=AUTH,
        )
        eval_id = r.json()["evaluation"]["id"]
        deadline = time.monotonic() + 60
        while _evaluation(c, base, eval_id)["progress"]["processed"] < 20:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.kill()
        # The rows done so far are on disk as whole parts: the restarted job resumes there.
        work = data / "oxen" / "work" / eval_id
        assert sorted(p.name for p in work.glob("part-*.arrow"))[0] == "part-000000000000.arrow"
        server.start()
        deadline = time.monotonic() + 120
        while (e := _evaluation(c, base, eval_id))["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, e
            time.sleep(0.1)
        if e["status"] == "failed":
            assert e["error_message"]
        else:
            table = pq.read_table(
                io.BytesIO(c.get(f"{base}/file/results/d.parquet", headers=AUTH).content)
            )
            assert table.column_names == ["text", "out"] and table.num_rows == 200
            assert all(table.column("out").to_pylist())
        assert not work.exists()  # the parts go once the evaluation is over
    _check_blobs(data)


def _check_blobs(data: Path) -> None:
    db = sqlite3.connect(data / "evaldock.sqlite3")
    rows = db.execute(
        "SELECT DISTINCT t.blob_key FROM oxen_branches b JOIN oxen_tree_entries t"
        " ON t.repo_id = b.repo_id AND t.commit_id = b.commit_id"
    ).fetchall()
    db.close()
    assert rows
    for (key,) in rows:
        assert (data / "oxen" / "blobs" / key[:2] / key[2:]).is_file(), key
