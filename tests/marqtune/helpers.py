"""Shared datasets, request bodies and polling for the Marqtune tests."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from typing import Any

AUTH = {"x-api-key": "test"}
SCHEMA = {"query": "text", "title": "text", "image": "image_pointer", "score": "score"}

# One row per (query, document) judgement. The mock ranker embeds a text from its words
# and an image from its file name, so each query's best document is the one it names.
EVAL_CSV = (
    "query,title,image,score\n"
    "red shirt,red shirt,img/red_shirt.png,10\n"
    "red shirt,blue jeans,img/blue_jeans.png,1\n"
    "blue jeans,blue jeans,img/blue_jeans.png,8\n"
    "green hat,green hat,img/green_hat.jpg,6\n"
    "green hat,red shirt,img/red_shirt.png,2\n"
    "black boots,black boots,img/black_boots.jpg,9\n"
)
HYPER = {
    "leftKeys": ["query"],
    "leftWeights": [1],
    "rightKeys": ["image", "title"],
    "rightWeights": [0.9, 0.1],
    "weightKey": "score",
}


def dataset_body(
    dataset_type: str = "evaluation", schema: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "datasetName": "eval set",
        "datasetType": dataset_type,
        "dataSchema": schema or SCHEMA,
    }
    if dataset_type == "evaluation":
        body.update(queryColumns=["query"], resultColumns=["title", "image"])
    body.update(extra)
    return body


def tar_bytes(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


TAR_QUERIES = "query,pid,score\nred shirt,p1,5\nred shirt,p2,1\nblue jeans,p2,4\n"
TAR_DOCUMENTS = "\n".join(
    json.dumps(d)
    for d in (
        {"pid": "p1", "title": "red shirt", "image": "img/red_shirt.png"},
        {"pid": "p2", "title": "blue jeans", "image": "img/blue_jeans.png"},
        {"pid": "p3", "title": "green hat", "image": "img/green_hat.png"},
    )
)
TAR_SCHEMA = {**SCHEMA, "pid": "doc_id"}


def wait_for(
    get: Callable[..., Any], url: str, done: tuple[str, ...], timeout: float = 30.0
) -> dict[str, Any]:
    """GET ``url`` until its status is one of ``done``; returns the body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = get(url, headers=AUTH).json()
        if body["status"] in done:
            return body
        time.sleep(0.03)
    raise AssertionError(f"{url} still {body.get('status')} after {timeout}s: {body}")


def summary_from_logs(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """How Marqo's walkthrough reads results: the last log lines, the summary dict's repr."""
    for line in lines[-10:]:
        message = line["message"]
        at = message.find("{'mAP@1000': ")
        if at >= 0:
            return json.loads(message[at:].replace("'", '"'))
    raise AssertionError("no summary line in the logs")
