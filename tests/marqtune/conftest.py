from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from evaldock.server.app import create_app
from tests.live import LIVE, live_clients

from .helpers import AUTH, EVAL_CSV, dataset_body, wait_for

REPO = Path(__file__).resolve().parents[2]


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


def ready_dataset(client: TestClient, csv: str = EVAL_CSV, **body: Any) -> str:
    """Create, upload and wait until Ready; returns the dataset id."""
    created = client.post("/datasets", json=dataset_body(**body), headers=AUTH).json()
    assert client.put(created["uploadUrl"], content=csv.encode()).status_code == 200
    wait_for(client.get, f"/datasets/{created['datasetId']}", ("Ready",))
    return created["datasetId"]
