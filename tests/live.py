"""Run the API suites against a live ``evaldock serve`` process (moto's server mode).

With ``EVALDOCK_TEST_SERVER=1`` the ``client`` and ``make_client`` fixtures hand out an
httpx client bound to a real server on a free loopback port instead of Starlette's
in-process TestClient, so every ``tests/<vendor>/test_api.py`` also runs over real HTTP.
Tests that reach into the process (monkeypatching a provider, the in-process host name)
are marked ``inprocess`` and skipped there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.serverproc import ServerProcess

LIVE = os.environ.get("EVALDOCK_TEST_SERVER", "") == "1"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_from_flags(flags: Mapping[str, Any]) -> str:
    """``{"marqtune.max_upload_bytes": 10}`` as a TOML file (dotted keys, quoted parts)."""
    lines = []
    for dotted, value in flags.items():
        key = ".".join(f'"{part}"' for part in dotted.split("."))
        lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


class LiveClient(httpx.Client):
    """An httpx client on a live server, shaped like Starlette's TestClient."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(base_url=server.url, timeout=60)
        self.server = server


def live_clients(tmp_path: Path) -> Iterator[Any]:
    """A factory of live clients (each its own server); stops them all afterwards."""
    started: list[tuple[ServerProcess, LiveClient]] = []

    def make(**flags: Any) -> LiveClient:
        n = len(started)
        config = None
        if flags:
            config = tmp_path / f"live-{n}.toml"
            config.write_text(toml_from_flags(flags))
        # The command line's --mode beats the file's: a real-mode test ran on mock engines.
        mode = str(flags.get("server.mode", "mock"))
        server = ServerProcess(tmp_path / f"live-data-{n}", config=config, mode=mode).start()
        client = LiveClient(server)
        started.append((server, client))
        return client

    try:
        yield make
    finally:
        for server, client in started:
            client.close()
            server.stop()
