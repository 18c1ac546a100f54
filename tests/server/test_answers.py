"""server/answers.py: finished answers kept by tenant and variant, bounded by bytes,
dropped on reset; Objective serves a completed evaluation from it."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.testclient import TestClient

from evaldock.server.answers import AnswerCache
from evaldock.server.app import create_app
from evaldock.server.objective.store import EvaluationStore
from tests.objective.helpers import AUTH, DEMO, poll


def test_bounded_by_bytes_least_recently_used_out() -> None:
    cache = AnswerCache(max_bytes=400)
    for i in range(4):
        cache.put("t", (f"r{i}", "json"), Response(b"x" * 100, media_type="application/json"))
    assert cache.size == 400
    assert cache.get("t", ("r0", "json")) is not None  # r0 is now the most recent
    cache.put("t", ("r4", "json"), Response(b"y" * 100))
    assert cache.size == 400
    assert cache.get("t", ("r1", "json")) is None  # the least recently used went
    assert cache.get("t", ("r0", "json")) is not None
    # One answer over a quarter of the budget is not kept; nor anything with 0 bytes budget.
    cache.put("t", ("big", "json"), Response(b"z" * 101))
    assert cache.get("t", ("big", "json")) is None
    off = AnswerCache(max_bytes=0)
    off.put("t", ("r", "json"), Response(b"{}"))
    assert off.get("t", ("r", "json")) is None


def test_tenants_variants_and_forget() -> None:
    cache = AnswerCache()
    cache.put("a", ("r1", "json"), Response(b"a-json", headers={"x-k": "1"}))
    cache.put("a", ("r1", "csv"), Response(b"a-csv"))
    cache.put("b", ("r1", "json"), Response(b"b-json"))
    hit = cache.get("a", ("r1", "json"))
    assert hit is not None and hit.body == b"a-json" and hit.headers["x-k"] == "1"
    # Hooks add headers to what they are given: the stored list is a copy.
    hit.headers["x-request-id"] = "1"
    again = cache.get("a", ("r1", "json"))
    assert again is not None and "x-request-id" not in again.headers
    assert cache.get("b", ("r1", "json")).body == b"b-json"  # type: ignore[union-attr]
    cache.forget("a", match="r1")
    assert cache.get("a", ("r1", "json")) is None and cache.get("a", ("r1", "csv")) is None
    assert cache.get("b", ("r1", "json")) is not None
    cache.forget()
    assert cache.size == 0 and cache.get("b", ("r1", "json")) is None


def test_completed_evaluation_is_rendered_once_per_variant(settings_factory, monkeypatch) -> None:
    settings = settings_factory(**{"control.key": "k"})
    with TestClient(create_app(settings)) as client:
        created = client.post("/v1/evaluations", json=DEMO, headers=AUTH).json()
        path = f"/v1/evaluations/{created['id']}"
        final = poll(client.get, path, AUTH)
        assert final["status"] == "completed"
        reads: list[Any] = []
        real_get = EvaluationStore.get

        async def counting_get(self: EvaluationStore, *args: Any) -> Any:
            reads.append(args)
            return await real_get(self, *args)

        monkeypatch.setattr(EvaluationStore, "get", counting_get)
        first = client.get(path, headers=AUTH)
        second = client.get(path, headers=AUTH)
        assert first.json() == second.json() == final
        assert first.headers["x-request-id"] != second.headers["x-request-id"]
        assert reads == []  # both from the stored answer
        csv_1 = client.get(path, headers={**AUTH, "Accept": "text/csv"})
        csv_2 = client.get(path, headers={**AUTH, "Accept": "text/csv"})
        assert csv_1.text == csv_2.text and csv_1.headers["content-type"].startswith("text/csv")
        assert len(reads) == 1  # rendered once as CSV
        # Another tenant never sees it; a reset drops it.
        other = {"Authorization": "Bearer other"}
        assert client.get(path, headers=other).status_code in (401, 404)
        r = client.post("/_evaldock/reset", headers={"X-Evaldock-Control-Key": "k"})
        assert r.status_code == 200, r.text
        assert client.get(path, headers=AUTH).status_code == 404
