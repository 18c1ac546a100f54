"""``evaldock jobs --watch``: a progress bar per job, redrawn until Ctrl-C, over a live
server whose held job is advanced while the command watches."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evaldock.server.cli import jobs_frame, progress_bar
from tests.serverproc import ServerProcess


def test_progress_bar_and_frame() -> None:
    assert progress_bar(1, 2, width=10) == "[#####-----] 1/2  50%"
    assert progress_bar(0, 0, width=4) == "[----] 0/?"
    assert progress_bar(5, 4, width=4) == "[####] 5/4 125%"  # a vendor over-counting
    job = {
        "surface": "objective",
        "id": "j1",
        "status": "waiting",
        "vendor_status": ["Paused", "waiting"],
        "processed": 3,
        "total": 4,
        "held": True,
    }
    frame = jobs_frame([job], {"j0": {**job, "id": "j0"}}, "http://x", "12:00:00")
    lines = frame.splitlines()
    assert lines[0].startswith("evaldock jobs at http://x  12:00:00")
    assert "waiting" in lines[2] and "3/4  75%" in lines[2] and lines[2].endswith("held")
    assert "Paused / waiting" in lines[2]
    assert lines[3].split()[:3] == ["objective", "j0", "ended"]
    assert "no job is queued" in jobs_frame([], {}, "u", "t")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        into.put(line)


def _until(lines: queue.Queue[str], wanted: str, job_id: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if job_id in line and wanted in line.split():
            return
    raise AssertionError(f"no {wanted!r} line for {job_id} in:\n{''.join(seen[-20:])}")


@pytest.mark.slow
def test_watch_follows_a_held_job_until_ctrl_c(server: ServerProcess) -> None:
    key = (server.data_dir / "control.key").read_text().strip()
    control = {"X-Evaldock-Control-Key": key}
    http = httpx.Client(base_url=server.url, timeout=30)
    hold = {"mode": "hold"}
    assert http.put("/_evaldock/jobs/objective/timing", json=hold, headers=control).is_success
    body = {"data": [{"query": "q", "object": {"t": "q"}}, {"query": "r", "object": {"t": "r"}}]}
    auth = {"Authorization": "Bearer test"}
    job_id = http.post("/v1/evaluations", json=body, headers=auth).json()["id"]

    command = ["jobs", "--watch", "--interval", "0.2", "--url", server.url]
    watch = subprocess.Popen(
        [sys.executable, "-m", "evaldock.server", *command, "--data", str(server.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(watch.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        _until(lines, "queued", job_id, seen)
        assert "[------------------------------] 0/2   0%" in seen[-1] and "held" in seen[-1]
        advance = f"/_evaldock/jobs/objective/{job_id}/advance"
        assert http.post(advance, headers=control).status_code == 200
        _until(lines, "running", job_id, seen)
        assert http.post(advance, headers=control).status_code == 200
        _until(lines, "ended", job_id, seen)  # it left the jobs in progress
        watch.send_signal(signal.SIGINT)  # Ctrl-C
        assert watch.wait(timeout=10) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
        http.close()
    assert not any("Traceback" in line for line in seen)
