"""pytest fixtures for contract tests against evaldock (entry point ``pytest11``).

    def test_my_client_retries(evaldock):
        evaldock.control.fault("objective", status=503, count=1)
        client = MyClient(base_url=evaldock.surfaces["objective"].base_url, api_key="test")
        ...

``evaldock_server`` (session): one ``evaldock serve --mode mock`` on a free port in a
temporary data directory. ``evaldock`` (function): the same server, reset — state,
faults, job timing and journal — before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .client import EvaldockServer


@pytest.fixture(scope="session")
def evaldock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvaldockServer]:
    data = tmp_path_factory.mktemp("evaldock") / "data"
    with EvaldockServer.start(data) as server:
        yield server


@pytest.fixture
def evaldock(evaldock_server: EvaldockServer) -> EvaldockServer:
    control = evaldock_server.control
    control.reset()
    for name in evaldock_server.surfaces:
        control.release_jobs(name)
    return evaldock_server
