"""The official ``oxenai`` client against evaldock, run in the clients' own venv.

Usage: python oxen_client_walk.py HOST:PORT WORKDIR OUT.json [folder]
(``folder``: only the folder download, into a new repository ox/folder.)
(HOME must point at a scratch folder: the client writes ~/.config/oxen there.)
Evaluations go over plain HTTP (the client has no evaluation wrapper), as documented.
"""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import oxen
import pandas as pd
from oxen import RemoteRepo

HOST, WORK, OUT = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
TOKEN = "test"


def http(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{HOST}{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def finish(repo: str, eval_id: str) -> dict[str, Any]:
    for _ in range(600):
        _, body = http("GET", f"/api/repos/{repo}/evaluations/{eval_id}")
        if body["evaluation"]["status"] in ("completed", "failed", "cancelled"):
            return body["evaluation"]
        time.sleep(0.1)
    raise TimeoutError(eval_id)


# A folder with nested files comes back byte for byte through RemoteRepo.download_zip
# and RemoteRepo.download (Oxen's Merkle tree transport: tree nodes, then versions).
FOLDER = {"a.txt": b"alpha\n", "sub/b.csv": b"x,y\n1,2\n", "sub/deep/c.bin": bytes(range(256))}


def folder_download(repo: RemoteRepo) -> dict[str, Any]:
    src = WORK / "tree"
    for rel, data in FOLDER.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        folder = "/".join(["tree", *rel.split("/")[:-1]])
        repo.upload(str(src / rel), commit_message=f"add {rel}", dst_dir=folder)
    dst = WORK / "tree.zip"
    repo.download_zip("tree", str(dst))
    with zipfile.ZipFile(dst) as zf:
        got = {n: zf.read(n) for n in zf.namelist()}
    out: dict[str, Any] = {"zip_names": sorted(got), "zip_equal": got == FOLDER}
    down = WORK / "tree-down"
    down.mkdir()
    try:
        repo.download("tree", str(down))
    except Exception as e:  # the client raises ValueError carrying the body
        out["folder_download"] = str(e)
        return out
    # The client writes the folder under dst (and its scratch node store in dst/.oxen).
    files = {str(p.relative_to(down / "tree")): p for p in (down / "tree").rglob("*")}
    got = {name: p.read_bytes() for name, p in files.items() if p.is_file()}
    out["folder_download"] = "downloaded"
    out["folder_names"] = sorted(got)
    out["folder_equal"] = got == FOLDER
    return out


def main() -> None:
    seen: dict[str, Any] = {}
    oxen.auth.config_auth(TOKEN, host=HOST)
    oxen.user.config_user("Ox", "ox@example.com")
    if sys.argv[4:] == ["folder"]:
        repo = RemoteRepo("ox/folder", host=HOST, scheme="http")
        repo.create(empty=False)
        OUT.write_text(json.dumps(folder_download(repo)))
        return
    repo = RemoteRepo("ox/intents", host=HOST, scheme="http")
    seen["exists_before"] = repo.exists()
    repo.create(empty=False)
    seen["exists_after"] = repo.exists()
    df = pd.DataFrame(
        {
            "text": ["book a flight", "cancel my order", "what is the weather", "hi there"],
            "label": ["travel", "orders", "weather", "greeting"],
            "score": [0.5, 1.5, 2.5, 3.5],
        }
    )
    src = WORK / "data.parquet"
    df.to_parquet(src, index=False)
    repo.upload(str(src), commit_message="add data")
    seen["file_exists"] = repo.file_exists("data.parquet")
    seen["missing_exists"] = repo.file_exists("nope.parquet")
    meta = repo.metadata("data.parquet")
    seen["metadata"] = str(meta)
    seen["ls"] = sorted(e.filename for e in repo.ls())
    seen["log"] = [c.message for c in repo.log()]
    main_head = repo.get_branch("main").commit_id

    R = "ox/intents"
    status, text = http(
        "POST",
        f"/api/repos/{R}/evaluations/main/data.parquet",
        {
            "name": "intents",
            "prompt": "Classify into travel, orders, weather, greeting:\n{text}",
            "type": "text",
            "model": "gpt-4o-mini",
            "is_sample": False,
            "target_column": "prediction",
            "target_branch": "results",
            "auto_commit": True,
            "commit_message": "predictions",
        },
    )
    seen["text_create"] = [status, text]
    seen["text"] = finish(R, text["evaluation"]["id"])
    status, emb = http(
        "POST",
        f"/api/repos/{R}/evaluations/main/data.parquet",
        {
            "name": "vectors",
            "prompt": "{text}",
            "type": "embeddings",
            "model": "text-embedding-3-small",
            "is_sample": False,
            "target_column": "embedding",
            "target_branch": "results",
            "auto_commit": True,
            "commit_message": "embeddings",
        },
    )
    seen["embeddings"] = finish(R, emb["evaluation"]["id"])
    status, sample = http(
        "POST",
        f"/api/repos/{R}/evaluations/main/data.parquet",
        {
            "name": "s",
            "prompt": "{text}",
            "type": "text",
            "model": "gpt-4o",
            "is_sample": True,
            "target_column": "p2",
            "target_branch": "sample-branch",
            "auto_commit": True,
        },
    )
    seen["sample"] = finish(R, sample["evaluation"]["id"])
    seen["bad_placeholder"] = http(
        "POST",
        f"/api/repos/{R}/evaluations/main/data.parquet",
        {
            "name": "b",
            "prompt": "{txet}",
            "type": "text",
            "model": "gpt-4o-mini",
            "target_column": "x",
        },
    )

    got = pd.read_parquet(io.BytesIO(repo.get_file("data.parquet", revision="results")))
    seen["results_columns"] = list(got.columns)
    seen["results_prediction"] = got["prediction"].tolist()
    seen["results_embedding_len"] = [len(v) for v in got["embedding"]]
    seen["intact"] = got[list(df.columns)].equals(df)
    dst = WORK / "down"
    dst.mkdir()
    repo.download("data.parquet", str(dst), revision="results")
    down = pd.read_parquet(dst / "data.parquet")
    seen["download_columns"] = list(down.columns)
    main_now = pd.read_parquet(io.BytesIO(repo.get_file("data.parquet", revision="main")))
    seen["main_columns"] = list(main_now.columns)
    seen["main_untouched"] = repo.get_branch("main").commit_id == main_head
    seen["branches"] = sorted(b.name for b in repo.branches())
    repo.create_branch("feature")
    seen["branch_exists"] = repo.branch_exists("feature")
    repo.delete_branch("feature")
    seen["branch_after_delete"] = repo.branch_exists("feature")
    seen["log_results"] = [c.message for c in repo.log(revision="results")]
    seen.update(folder_download(repo))  # last: it commits to main
    OUT.write_text(json.dumps(seen, indent=1, default=str))


if __name__ == "__main__":
    main()
