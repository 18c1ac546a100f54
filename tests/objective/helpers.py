"""Shared request bodies and polling for the Objective tests."""

from __future__ import annotations

import time
from typing import Any

SHIRT = {
    "detail_desc": "Straight-cut, striped shirt in cotton and viscose twill in a relaxed fit "
    "with a turn-down collar and classic front."
}
DEMO = {
    "configuration": {"eval_name": "Evaluations API Demo"},
    "data": [
        {"query": "shirts with stripes", "object_id": "597073001", "object": SHIRT},
        {"query": "solid shirts", "object_id": "597073001", "object": SHIRT},
        {"query": "summer dress", "object_id": 42, "object": {"title": "Blue Shirt"}},
    ],
}
AUTH = {"Authorization": "Bearer test"}


def poll(get, url: str, headers: dict[str, str], timeout: float = 30.0) -> dict[str, Any]:
    """GET until the evaluation leaves accepted/processing; returns the final body."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = get(url, headers=headers).json()
        if body["status"] not in ("accepted", "processing"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"evaluation still {body['status']} after {timeout}s")
