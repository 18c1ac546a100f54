from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from .helpers import AUTH, EVAL_CSV, dataset_body, wait_for

REPO = Path(__file__).resolve().parents[2]


def ready_dataset(client: TestClient, csv: str = EVAL_CSV, **body: Any) -> str:
    """Create, upload and wait until Ready; returns the dataset id."""
    created = client.post("/datasets", json=dataset_body(**body), headers=AUTH).json()
    assert client.put(created["uploadUrl"], content=csv.encode()).status_code == 200
    wait_for(client.get, f"/datasets/{created['datasetId']}", ("Ready",))
    return created["datasetId"]
