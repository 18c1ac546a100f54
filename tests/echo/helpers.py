"""Building an app with the echo surface alone (tests/server/ and tests/echo/ use these)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from evaldock.server.app import create_app
from evaldock.server.config import Settings
from evaldock.server.load import load_settings

from . import SURFACE

AUTH = {"Authorization": "Bearer test"}


def echo_settings(
    tmp_path: Path, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    base: dict[str, Any] = {
        "server.data": str(tmp_path / "data"),
        "server.mode": "mock",
        "server.surfaces": ["echo"],
    }
    base.update(flags or {})
    return load_settings(None, base, environ=dict(environ or {}))


def echo_client(settings: Settings, **kwargs: Any) -> TestClient:
    """Not started: use it as ``with echo_client(...) as client``."""
    return TestClient(create_app(settings, engines={}, extra_surfaces=[SURFACE]), **kwargs)


def poll_item(
    client: TestClient,
    item_id: str,
    headers: Mapping[str, str] = AUTH,
    base: str = "/echo-v1/items/",
) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = client.get(base + item_id, headers=dict(headers)).json()
        if body["status"] not in ("pending", "working"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"item {item_id} still {body['status']}")
