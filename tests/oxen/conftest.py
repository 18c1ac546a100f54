from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from tests.live import LIVE, live_clients


@pytest.fixture
def make_client(settings_factory, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """In-process app factory with extra settings (dotted flags), lifespan on; live
    servers with ``EVALDOCK_TEST_SERVER=1``."""
    if LIVE:
        yield from live_clients(tmp_path)
        return
    opened: list[TestClient] = []

    def make(**flags: Any) -> TestClient:
        client = TestClient(create_app(settings_factory(**flags)))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
