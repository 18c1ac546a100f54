"""server/routing.py against the echo surface: per-method routes, specific before
catch-all whatever the spec order, the envelope's 405/404, literal paths, prefix mount."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.echo.helpers import AUTH, echo_client, echo_settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with echo_client(echo_settings(tmp_path)) as c:
        yield c


@pytest.mark.parametrize("root", ["", "/echo"])
def test_catch_all_listed_first_does_not_swallow_siblings(client: TestClient, root: str) -> None:
    r = client.get(f"{root}/echo-v1/things/t1", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"op": "get_thing", "id": "t1"}
    r = client.post(f"{root}/echo-v1/things/t1/cancel", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"op": "cancel_thing", "id": "t1"}
    r = client.post(f"{root}/echo-v1/things/main/a/b/c.txt", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"op": "thing_path", "branch": "main", "path": "a/b/c.txt"}
    # One segment after the branch still reaches the catch-all (not cancel).
    r = client.post(f"{root}/echo-v1/things/main/readme", headers=AUTH)
    assert r.json()["op"] == "thing_path"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/echo-v1/items"),
        ("PATCH", "/echo-v1/items/it_1"),
        ("GET", "/echo-v1/blobs/a.bin"),
        ("DELETE", "/echo-v1/things/t1"),
        ("GET", "/echo-v1/things/t1/cancel"),
        ("DELETE", "/echo/echo-v1/things/t1"),
    ],
)
def test_wrong_method_on_known_path_is_envelope_405(
    client: TestClient, method: str, path: str
) -> None:
    r = client.request(method, path, headers=AUTH)
    assert r.status_code == 405, (method, path, r.status_code, r.text)
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_literal_path_claims_every_method(client: TestClient) -> None:
    # GET items/reindex must not be read as GET items/{id} with id "reindex".
    r = client.get("/echo-v1/items/reindex", headers=AUTH)
    assert r.status_code == 405, r.text
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = client.post("/echo-v1/items/reindex", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"reindexed": True}


def test_unknown_path_under_claim_and_prefix_is_envelope_404(client: TestClient) -> None:
    for path in ("/echo-v1/nothing", "/echo-v1", "/echo/anything/else"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found", path
    # Outside every surface: the core's own 404.
    r = client.get("/elsewhere")
    assert r.status_code == 404 and "error" not in r.json()


@pytest.mark.parametrize(
    "path", ["/echo-v1/no%0Athing", "/echo-v1/x/%0A/y", "/echo/any%0Athing", "/echo-v1/%0A"]
)
def test_line_breaks_in_a_path_keep_the_envelope(client: TestClient, path: str) -> None:
    # Starlette's {rest:path} is ``.*``, which stops at a line break: these reached the
    # core's bare 404 (schemathesis found one under Oxen's paths in 3 of 3 runs).
    r = client.get(path, headers=AUTH)
    assert r.status_code == 404, (path, r.text)
    assert r.json()["error"]["code"] == "not_found", path


def test_catch_all_takes_line_breaks(client: TestClient) -> None:
    r = client.post("/echo-v1/things/main/a%0Ab/c.txt", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"op": "thing_path", "branch": "main", "path": "a\nb/c.txt"}


def test_prefix_mount_serves_the_same_operations(client: TestClient) -> None:
    created = client.post("/echo/echo-v1/items", json={"name": "p"}, headers=AUTH).json()
    # The URL handed out keeps the mount the client used.
    assert created["url"] == f"http://testserver/echo/echo-v1/items/{created['id']}"
    assert client.get(f"/echo-v1/items/{created['id']}", headers=AUTH).json()["name"] == "p"
    assert client.get("/echo/echo-v1/open").json()["base_url"] == "http://testserver/echo"
    assert client.get("/echo-v1/open").json()["base_url"] == "http://testserver"


def test_spec_served_under_prefix(client: TestClient) -> None:
    r = client.get("/echo/openapi.json")
    assert r.status_code == 200
    assert r.json()["x-evaldock"]["surface"] == "echo"
    assert client.get("/echo/openapi.yaml").text.startswith("openapi:")


def test_route_index_tries_only_the_routes_of_the_first_segment() -> None:
    """Structural: a request is matched against its first segment's routes alone (the
    app has ~200), in their original order, wildcard first segments included."""
    from starlette.routing import Match, Route

    from evaldock.server.routing import RouteIndex

    tried: list[str] = []

    class Counting(Route):
        def matches(self, scope):  # type: ignore[no-untyped-def]
            tried.append(self.path)
            return super().matches(scope)

    async def endpoint(request):  # type: ignore[no-untyped-def]
        return None

    paths = [f"/s{i}/items/{{id}}" for i in range(200)]
    paths[100:100] = ["/{anything}/special"]
    index = RouteIndex([Counting(p, endpoint) for p in paths])
    scope = {"type": "http", "method": "GET", "path": "/s150/items/7", "root_path": ""}
    match, child = index.matches(scope)
    assert match is Match.FULL and child["path_params"] == {"id": "7"}
    assert tried == ["/{anything}/special", "/s150/items/{id}"]
    tried.clear()
    match, _ = index.matches({**scope, "path": "/s3/special"})
    assert match is Match.FULL and tried == ["/s3/items/{id}", "/{anything}/special"]
    tried.clear()
    match, _ = index.matches({**scope, "path": "/nowhere/x"})
    assert match is Match.NONE and tried == ["/{anything}/special"]


def test_two_surfaces_on_one_template_are_refused() -> None:
    from types import SimpleNamespace
    from typing import Any

    from evaldock.server.routing import RouteClash, check_clashes

    def route(surface: str, path: str, *methods: str) -> Any:
        pipeline = SimpleNamespace(spec=SimpleNamespace(surface=surface))
        return SimpleNamespace(path=path, methods=set(methods), pipeline=pipeline)

    fine = [
        route("spice", "/v1/evals/{name}", "GET", "HEAD"),
        route("spice", "/v1/evals/{name}", "PUT"),  # one surface, two operations
        route("openai", "/openai/v1/evals/{eval_id}", "GET", "HEAD"),
        route("objective", "/v1/evaluations/{id}", "GET", "HEAD"),
    ]
    check_clashes(fine)
    with pytest.raises(RouteClash, match="'spice' and 'openai' both serve GET /v1/evals/"):
        check_clashes([*fine, route("openai", "/v1/evals/{eval_id}", "GET", "HEAD")])


def test_a_surface_off_the_root_is_served_only_under_its_prefix(tmp_path: Path) -> None:
    from evaldock.server.routing import operation_routes

    with echo_client(echo_settings(tmp_path)) as c:
        runtime = next(rt for rt in c.app.state.runtimes if rt.spec.surface == "echo")
        paths = {r.path for r in operation_routes(runtime.pipeline)}
        assert "/echo-v1/items" in paths and "/echo/echo-v1/items" in paths
        runtime.spec.root = False
        try:
            paths = {r.path for r in operation_routes(runtime.pipeline)}
        finally:
            runtime.spec.root = True
        assert "/echo-v1/items" not in paths and "/echo/echo-v1/items" in paths


@pytest.mark.parametrize("method", ["QUERY", "PROPFIND", "TRACE"])
def test_any_method_under_a_surface_gets_its_envelope(client: TestClient, method: str) -> None:
    for path in ("/echo-v1/items", "/echo-v1/nothing", "/echo/echo-v1/items"):
        r = client.request(method, path, headers=AUTH)
        assert r.status_code in (404, 405), (method, path, r.text)
        assert r.json()["error"]["code"] in ("not_found", "method_not_allowed"), (method, path)


def test_an_extension_method_is_an_operation() -> None:
    from evaldock.server.spec import parse_spec

    spec = parse_spec(
        "openapi: 3.0.3\nx-evaldock: {surface: t}\npaths:\n  /v:\n"
        "    x-evaldock-query: {operationId: query_v, responses: {'200': {description: ok}}}\n",
        "t.yaml",
    )
    assert [(op.method, op.operation_id) for op in spec.operations] == [("QUERY", "query_v")]
