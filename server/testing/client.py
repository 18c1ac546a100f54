"""A client of the control plane, and a throwaway ``evaldock serve`` to point tests at.

with EvaldockServer.start(tmp_dir) as server:
    server.surfaces["objective"].base_url   # http://127.0.0.1:PORT
    server.control.hold_jobs("objective")
    ...
    server.control.advance("objective", evaluation_id)
    server.control.journal(surface="objective")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evaldock.server.config import DEV_KEY
from evaldock.server.control.keys import read_key

CONTROL_HEADER = "X-Evaldock-Control-Key"


class ControlClient:
    """The levers of ``/_evaldock/*``, reading the control key itself."""

    def __init__(self, url: str, key: str, *, timeout: float = 30) -> None:
        self.http = httpx.Client(base_url=url, headers={CONTROL_HEADER: key}, timeout=timeout)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json()

    def reset(self, surface: str | None = None, key: str | None = None) -> Any:
        body = {k: v for k, v in (("surface", surface), ("key", key)) if v is not None}
        return self._call("POST", "/_evaldock/reset", json=body)

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        entries: list[dict[str, Any]] = self._call("GET", "/_evaldock/journal", params=params)[
            "entries"
        ]
        return entries

    def clear_journal(self) -> None:
        self._call("DELETE", "/_evaldock/journal")

    def fault(self, surface: str, **spec: Any) -> dict[str, Any]:
        fault: dict[str, Any] = self._call(
            "POST", "/_evaldock/faults", json={"surface": surface, **spec}
        )
        return fault

    def clear_faults(self) -> None:
        self._call("DELETE", "/_evaldock/faults")

    def timing(self, surface: str, mode: str, n: float = 0) -> Any:
        return self._call("PUT", f"/_evaldock/jobs/{surface}/timing", json={"mode": mode, "n": n})

    def hold_jobs(self, surface: str) -> Any:
        return self.timing(surface, "hold")

    def release_jobs(self, surface: str) -> Any:
        return self.timing(surface, "immediate")

    def advance(self, surface: str, resource_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._call("POST", f"/_evaldock/jobs/{surface}/{resource_id}/advance")
        return job

    def fail(self, surface: str, resource_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        job: dict[str, Any] = self._call(
            "POST", f"/_evaldock/jobs/{surface}/{resource_id}/fail", json=body
        )
        return job

    def jobs(self, surface: str | None = None, *, all: bool = False) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"all": str(all).lower()}
        if surface:
            params["surface"] = surface
        jobs: list[dict[str, Any]] = self._call("GET", "/_evaldock/jobs", params=params)["jobs"]
        return jobs

    def close(self) -> None:
        self.http.close()


@dataclass(frozen=True)
class Surface:
    name: str
    base_url: str  # the vendor's paths at the root, as official clients expect
    prefixed_base_url: str
    credential: str  # the development credential ("test"; Qianfan: the pair test/test)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EvaldockServer:
    """``evaldock serve --mode mock`` on a free loopback port in a data directory."""

    def __init__(self, data_dir: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.control = ControlClient(self.url, read_key(data_dir))
        listed = httpx.get(self.url + "/_evaldock/surfaces", timeout=10).json()
        self.surfaces = {
            s["surface"]: Surface(s["surface"], s["base_url"], s["prefixed_base_url"], DEV_KEY)
            for s in listed
        }

    @classmethod
    def start(
        cls,
        data_dir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
    ) -> EvaldockServer:
        """``env`` adds to (or replaces in) the environment the server inherits."""
        port = _free_port()
        log = (data_dir.parent / f"evaldock-{port}.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evaldock.server",
                "serve",
                "--mode",
                "mock",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data",
                str(data_dir),
                "--log-level",
                "warning",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**{k: v for k, v in os.environ.items() if k != "EVALDOCK_CONFIG"}, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"evaldock exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_evaldock/health", timeout=1).is_success:
                    return cls(data_dir, port, proc)
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError(f"evaldock did not start within {timeout} s; see {log.name}")

    def stop(self) -> None:
        self.control.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> EvaldockServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
