"""Keep-alive polling load: evaldock against a bare Starlette app serving the same bytes.

Clients of hosted evaluation APIs poll: create an evaluation, then GET it every few
hundred milliseconds until it completes, often hundreds at once. This measures what
that costs evaldock, and what it leaves for the work itself:

1. requests/s of N keep-alive clients (HTTP/1.1, one connection each, each polling in
   a loop) against ``GET /v1/evaluations/{id}`` of a completed 5-pair Objective
   evaluation, and against a bare Starlette app under uvicorn answering the same JSON
   bytes; the ratio is evaldock's overhead (routing, auth, validation, SQLite);
2. evaluation throughput (create a 5-pair evaluation, poll it to completion, by a few
   foreground workers) while 50 or 200 clients poll in the background: completed
   evaluations/s and POST latency (p50/p99).

Both servers run as subprocesses on free 127.0.0.1 ports, with the same log level;
the load generator is one asyncio process of raw sockets (about 20 us a request, far
below either server). Bounded: about two minutes with the defaults.

    .venv/bin/python scripts/bench_poll.py                # defaults
    .venv/bin/python scripts/bench_poll.py --duration 3 --work-duration 6 --clients 50,200

Figures share the machine with the load generator: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUTH = "Bearer test"  # the development key of --mode mock
PAIRS = [{"query": "q", "object": {"t": "x"}}] * 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a minimal HTTP/1.1 keep-alive client over asyncio streams -------------------------------


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", auth: bool = True
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if auth:
            head += f"Authorization: {AUTH}\r\n"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while size := int((await self.reader.readline()).strip(), 16):
                data += await self.reader.readexactly(size)
                await self.reader.readline()
            await self.reader.readline()
        else:
            data = await self.reader.readexactly(length)
        return int(status_line.split()[1]), data

    def close(self) -> None:
        self.writer.close()


async def wait_ready(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await Conn.open(port)
            status, _ = await conn.request("GET", path, auth=False)
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"server on port {port} did not answer {path} in {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def create_evaluation(conn: Conn) -> tuple[str, float]:
    body = json.dumps({"data": PAIRS}).encode()
    started = time.perf_counter()
    status, data = await conn.request("POST", "/v1/evaluations", body)
    elapsed = time.perf_counter() - started
    if status != 200:
        raise SystemExit(f"POST /v1/evaluations answered {status}: {data[:300]!r}")
    return json.loads(data)["id"], elapsed


async def poll_until_done(conn: Conn, eval_id: str, interval: float, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        status, data = await conn.request("GET", f"/v1/evaluations/{eval_id}")
        state = json.loads(data).get("status") if status == 200 else None
        if state == "completed":
            return data
        if state == "error" or status != 200:
            raise SystemExit(f"evaluation {eval_id}: HTTP {status} {data[:300]!r}")
        if time.monotonic() > deadline:
            raise SystemExit(f"evaluation {eval_id} not completed in {timeout:.0f} s")
        await asyncio.sleep(interval)


# -- load -------------------------------------------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.ok = 0
        self.bad = 0


async def pollers(port: int, path: str, clients: int, stop: asyncio.Event, counts: Counts) -> None:
    """``clients`` keep-alive loops GETting ``path`` until ``stop``; answers in ``counts``."""

    async def one() -> None:
        try:
            conn = await Conn.open(port)
        except OSError:
            counts.bad += 1
            return
        try:
            while not stop.is_set():
                status, _ = await conn.request("GET", path)
                if status == 200:
                    counts.ok += 1
                else:
                    counts.bad += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            counts.bad += 1
        finally:
            conn.close()

    await asyncio.gather(*(one() for _ in range(clients)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def rate(
    port: int, pid: int, path: str, clients: int, seconds: float
) -> tuple[float, float, int]:
    """(requests/s after a warm-up, server CPU us a request, failures) of ``clients``
    pollers for ``seconds``. CPU per request is the steadier figure on a shared machine."""
    stop, counts = asyncio.Event(), Counts()
    task = asyncio.ensure_future(pollers(port, path, clients, stop, counts))
    await asyncio.sleep(min(1.0, seconds / 4))  # connect and warm up
    ok0, cpu0, started = counts.ok, cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    ok1, cpu1, elapsed = counts.ok, cpu_seconds(pid), time.perf_counter() - started
    stop.set()
    await task
    served = max(ok1 - ok0, 1)
    return served / elapsed, 1e6 * (cpu1 - cpu0) / served, counts.bad


async def work_under_load(
    port: int, poll_path: str, background: int, seconds: float, workers: int
) -> dict[str, float]:
    stop, counts = asyncio.Event(), Counts()
    load = asyncio.ensure_future(pollers(port, poll_path, background, stop, counts))
    await asyncio.sleep(0.5)
    polled0 = counts.ok
    completed = 0
    posts: list[float] = []

    async def worker() -> None:
        nonlocal completed
        conn = await Conn.open(port)
        try:
            while not stop.is_set():
                eval_id, elapsed = await create_evaluation(conn)
                posts.append(elapsed)
                await poll_until_done(conn, eval_id, interval=0.05, timeout=120)
                if not stop.is_set():
                    completed += 1
        finally:
            conn.close()

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    await asyncio.sleep(seconds)
    polled, elapsed = counts.ok - polled0, time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    await load
    posts.sort()
    return {
        "evals_per_s": completed / elapsed,
        "post_p50_ms": 1000 * statistics.median(posts) if posts else float("nan"),
        "post_p99_ms": 1000 * posts[min(len(posts) - 1, int(0.99 * len(posts)))]
        if posts
        else float("nan"),
        "posts": len(posts),
        "polls_per_s": polled / elapsed,
        "poll_errors": counts.bad,
    }


# -- servers ----------------------------------------------------------------------------------

BARE_APP = textwrap.dedent(
    """
    import sys
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    BODY = open(sys.argv[1], "rb").read()

    async def evaluation(request):
        return Response(BODY, media_type="application/json")

    async def health(request):
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[
        Route("/v1/evaluations/{id}", evaluation),
        Route("/_evaldock/health", health),
    ])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level=sys.argv[3])
    """
)


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def evaldock_command(args: argparse.Namespace) -> list[str]:
    if args.evaldock:
        return args.evaldock.split()
    exe = REPO / ".venv" / "bin" / "evaldock"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "evaldock.server"]


async def main(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        cmd = [
            *evaldock_command(args),
            "serve",
            "--mode",
            "mock",
            "--data",
            str(tmp / "data"),
            "--port",
            str(port),
            "--log-level",
            args.log_level,
        ]
        procs.append(start(cmd, tmp / "evaldock.log"))
        await wait_ready(port, "/_evaldock/health")
        conn = await Conn.open(port)
        eval_id, _ = await create_evaluation(conn)
        body = await poll_until_done(conn, eval_id, interval=0.1, timeout=120)
        conn.close()
        (tmp / "body.json").write_bytes(body)
        path = f"/v1/evaluations/{eval_id}"

        bare_port = free_port()
        (tmp / "bare.py").write_text(BARE_APP)
        procs.append(
            start(
                [
                    sys.executable,
                    str(tmp / "bare.py"),
                    str(tmp / "body.json"),
                    str(bare_port),
                    args.log_level,
                ],
                tmp / "bare.log",
            )
        )
        await wait_ready(bare_port, "/_evaldock/health")

        print(
            f"GET {path}: {len(body)} bytes; {args.duration:g} s per run, log level "
            f"{args.log_level}, {os.cpu_count()} CPUs (shared with the load generator)"
        )
        print(
            f"{'clients':>8} {'evaldock req/s':>15} {'bare req/s':>11} {'ratio':>6} "
            f"{'evaldock CPU us/req':>20} {'bare CPU us/req':>16} {'errors':>7}"
        )
        for clients in levels:
            ours, ours_cpu, ours_bad = await rate(port, procs[0].pid, path, clients, args.duration)
            bare, bare_cpu, bare_bad = await rate(
                bare_port, procs[1].pid, path, clients, args.duration
            )
            print(
                f"{clients:>8} {ours:>15.0f} {bare:>11.0f} {ours / bare:>6.2f} "
                f"{ours_cpu:>20.0f} {bare_cpu:>16.0f} {ours_bad + bare_bad:>7}",
                flush=True,
            )

        if args.work_duration > 0:
            print(
                f"\nEvaluation throughput: {args.workers} workers create 5-pair evaluations "
                f"and poll each to completion (every 50 ms), {args.work_duration:g} s, "
                "with background pollers"
            )
            print(
                f"{'pollers':>8} {'evals/s':>8} {'POST p50 ms':>12} {'POST p99 ms':>12} "
                f"{'POSTs':>6} {'polls/s':>8} {'errors':>7}"
            )
            for background in (50, 200):
                r = await work_under_load(port, path, background, args.work_duration, args.workers)
                print(
                    f"{background:>8} {r['evals_per_s']:>8.2f} {r['post_p50_ms']:>12.1f} "
                    f"{r['post_p99_ms']:>12.1f} {r['posts']:>6.0f} {r['polls_per_s']:>8.0f} "
                    f"{r['poll_errors']:>7.0f}",
                    flush=True,
                )
    finally:
        for proc in procs:
            stop_process(proc)
        if args.keep:
            print(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="50,100,200", help="client counts (phase 1)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per phase-1 run")
    parser.add_argument(
        "--work-duration", type=float, default=12.0, help="seconds per phase-2 run (0: skip)"
    )
    parser.add_argument("--workers", type=int, default=4, help="phase-2 evaluation workers")
    parser.add_argument("--log-level", default="warning", help="both servers' log level")
    parser.add_argument("--evaldock", default="", help="command that runs evaldock")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
