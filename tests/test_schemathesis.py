"""Property-based contract tests: schemathesis over every spec against a live server.

No 5xx, and every response conforms to the spec: status code, content type, headers
and body schema. Requests carry the development credential of the spec's scheme.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import content_type_conformance

from evaldock.server.spec import load_spec, spec_files
from tests.serverproc import ServerProcess

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
)


def dev_credentials(filename: str) -> dict[str, str]:
    schemes = load_spec(filename).doc.get("components", {}).get("securitySchemes", {})
    for scheme in schemes.values():
        if scheme.get("type") == "http" and scheme.get("scheme") == "bearer":
            return {"Authorization": "Bearer test"}
        if scheme.get("type") == "apiKey" and scheme.get("in") == "header":
            return {scheme["name"]: "test"}
    return {}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = Path(tmp_path_factory.mktemp("schemathesis")) / "data"
    with ServerProcess(data) as proc:
        yield proc


@pytest.fixture(scope="module")
def control_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The control plane gets a server of its own: the faults and resets schemathesis
    sends must not reach the vendor specs' runs. Its key is the development one."""
    data = Path(tmp_path_factory.mktemp("schemathesis-control")) / "data"
    with ServerProcess(data, env={"EVALDOCK_CONTROL__KEY": "test"}) as proc:
        yield proc


@pytest.fixture(params=spec_files())
def api_schema(request: pytest.FixtureRequest):
    spec = load_spec(request.param)
    fixture = "control_server" if request.param == "evaldock.yaml" else "live_server"
    live_server: ServerProcess = request.getfixturevalue(fixture)
    # A surface off the root (OpenAI Evals) is reached under its prefix only.
    base_url = live_server.url + ("" if spec.root else spec.prefix)
    schema = schemathesis.from_uri(
        f"{live_server.url}{spec.prefix}/openapi.json", base_url=base_url
    )
    schema.credentials = dev_credentials(request.param)  # type: ignore[attr-defined]
    return schema


schema = schemathesis.from_pytest_fixture("api_schema")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
@schema.parametrize()
def test_spec_conformance(case, api_schema) -> None:
    case.call_and_validate(headers=api_schema.credentials, checks=CHECKS, timeout=30)
