"""Signed calls for the Qianfan API tests: bce-auth-v1 headers as the SDK makes them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from evaldock.server.qianfan.signing import canonical_time, sign

AK, SK = "test", "test"
EVAL = "/wenxinworkshop/modelrepo/eval"
DATASET = "/wenxinworkshop/evaldock/dataset"


def signed_headers(
    method: str,
    url: str,
    host: str,
    *,
    ak: str = AK,
    sk: str = SK,
    content_type: str = "application/json",
    prefix: str = "",
    when: datetime | None = None,
) -> dict[str, str]:
    parts = urlsplit(url)
    path = parts.path
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    query = []
    if parts.query:
        from urllib.parse import parse_qsl

        query = parse_qsl(parts.query, keep_blank_values=True)
    moment = when or datetime.now(UTC)
    headers = {
        "content-type": content_type,
        "host": host,
        "request-source": "qianfan_py_sdk_v0.4.12.3",
        "x-bce-date": canonical_time(moment),
    }
    headers["authorization"] = sign(method, path, query, headers, ak, sk, timestamp=moment)
    return headers


def host_of(client: Any) -> str:
    return urlsplit(str(client.base_url)).netloc


def call(client: Any, path: str, body: Any = None, **kwargs: Any) -> Any:
    """POST a signed JSON body; returns the response."""
    prefix = kwargs.pop("prefix", "")
    headers = signed_headers("POST", prefix + path, host_of(client), prefix=prefix, **kwargs)
    return client.post(prefix + path, json=body if body is not None else {}, headers=headers)


def ok(client: Any, path: str, body: Any = None, **kwargs: Any) -> Any:
    r = call(client, path, body, **kwargs)
    assert r.status_code == 200, r.text
    data = r.json()
    assert "error_code" not in data, data
    return data["result"]


def add_dataset(client: Any, cases: list[dict[str, str]], name: str = "demo") -> str:
    return str(ok(client, f"{DATASET}/create", {"name": name, "cases": cases})["datasetId"])


def create_eval(client: Any, dataset_id: str, versions: int = 1, **conf: Any) -> dict[str, Any]:
    body = {
        "name": "e1",
        "versionEvalInfo": [
            {"modelId": f"am-{i}", "modelVersionId": f"amv-{i}"} for i in range(versions)
        ],
        "datasetId": dataset_id,
        "evalStandardConf": {"evalMode": "rule", "scoreModes": ["similarity", "accuracy"], **conf},
        "computeResourceConf": {"vmType": 1, "vmNumber": 8},
    }
    result: dict[str, Any] = ok(client, f"{EVAL}/create", body)
    return result


def wait_state(client: Any, eval_id: Any, done=("Done", "PartlyDone", "Failed", "Stopped")) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        detail = ok(client, f"{EVAL}/detail", {"id": eval_id})
        if detail["state"] in done:
            return detail
        time.sleep(0.05)
    raise AssertionError(f"evaluation {eval_id} did not finish: {detail}")


def wait_export(client: Any, export_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = ok(client, f"{EVAL}/result/export/info", {"exportID": export_id})
        if info["state"] not in ("Pending", "Uploading"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"export {export_id} did not finish: {info}")
