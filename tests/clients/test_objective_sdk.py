"""The official objective-sdk (5.22.0) against a real server, through its generic calls."""

import json

from tests.serverproc import ServerProcess

from .conftest import run_client


def test_objective_sdk_walk(server: ServerProcess, clients_python: str) -> None:
    out = json.loads(run_client(clients_python, "objective_sdk_walk.py", server.url + "/v1"))
    assert out["created"]["status"] == "accepted"
    final = out["final"]
    assert final["status"] == "completed"
    assert [j["judgement"]["label"] for j in final["judgements"]] == ["GREAT", "BAD"]
    assert out["listed"]["pagination"]["total_records"] == 1
    assert out["errors"]["401"][0] == 401
    assert out["errors"]["404"] == [
        404,
        {"message": "Evaluation ev_missing not found.", "type": "not_found"},
    ]
    assert out["errors"]["400"] == [
        400,
        {"message": "data must contain at least 1 item", "type": "invalid_request"},
    ]
