"""Keep-alive polling load: evaldock against a bare Starlette app serving the same bytes.

Clients of hosted evaluation APIs poll: create an evaluation, then GET it every few
hundred milliseconds until it completes, often hundreds at once. This measures what
that costs evaldock, and what it leaves for the work itself:

1. requests/s of N keep-alive clients (HTTP/1.1, one connection each, each polling in
   a loop) against ``GET /v1/evaluations/{id}`` of a completed 5-pair Objective
   evaluation, on evaldock with each HTTP/1.1 parser (``[server] http = "h11"`` and
   ``"httptools"``), and against a bare Starlette app under uvicorn answering the same
   JSON bytes, also with each parser; the ratios are evaldock's overhead (routing,
   auth, the read gate, SQLite, the receipt deadline). The headline is evaldock
   httptools / bare h11 (target >= 0.8x), beside the like-for-like ratios;
2. evaluation throughput (create a 5-pair evaluation, poll it to completion, by a few
   foreground workers) while 50 or 200 clients poll in the background, on evaldock
   with each parser: completed evaluations/s and POST latency (p50/p99).

The four servers run as subprocesses on free 127.0.0.1 ports, with the same log level,
and are measured one after another, in a rotating order per client count; the load
generator is one asyncio process of raw sockets (about 20 us a request, far below any
server). Bounded: about four minutes with the defaults.

    .venv/bin/python scripts/bench_poll.py                # defaults
    .venv/bin/python scripts/bench_poll.py --duration 3 --work-duration 6 --clients 50,200
    .venv/bin/python scripts/bench_poll.py --repeat 3 --work-duration 0   # a noisy machine

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


def ratio(results: dict[str, tuple[float, float]], ours: str, bare: str) -> str:
    """Throughput ratio, and in parentheses the CPU ratio (bare us / ours us)."""
    (o_rps, o_cpu), (b_rps, b_cpu) = results[ours], results[bare]
    return f"{o_rps / b_rps:.2f} ({b_cpu / o_cpu:.2f})"


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
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[2]), log_level=sys.argv[3], http=sys.argv[4]
    )
    """
)


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    environ = {**os.environ, **(env or {})}
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=environ)


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


PARSERS = ("h11", "httptools")


class Server:
    """One server under test: its name, port and process."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.name, self.port, self.proc = name, port, proc


async def start_evaldock(
    args: argparse.Namespace, tmp: Path, http: str
) -> tuple[Server, str, bytes]:
    """evaldock in mock mode with ``[server] http = http``, and a completed evaluation:
    (the server, its poll path, the evaluation's JSON)."""
    port = free_port()
    cmd = [
        *evaldock_command(args),
        "serve",
        "--mode",
        "mock",
        "--data",
        str(tmp / f"data-{http}"),
        "--port",
        str(port),
        "--log-level",
        args.log_level,
    ]
    proc = start(cmd, tmp / f"evaldock-{http}.log", {"EVALDOCK_SERVER__HTTP": http})
    await wait_ready(port, "/_evaldock/health")
    conn = await Conn.open(port)
    eval_id, _ = await create_evaluation(conn)
    body = await poll_until_done(conn, eval_id, interval=0.1, timeout=120)
    conn.close()
    return Server(f"evaldock {http}", port, proc), f"/v1/evaluations/{eval_id}", body


async def main(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.clients.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    servers: list[Server] = []
    paths: dict[str, str] = {}
    try:
        body = b""
        for http in PARSERS:
            server, paths[server.name], body = await start_evaldock(args, tmp, http)
            servers.append(server)
        (tmp / "body.json").write_bytes(body)
        (tmp / "bare.py").write_text(BARE_APP)
        for http in PARSERS:
            port = free_port()
            cmd = [sys.executable, str(tmp / "bare.py"), str(tmp / "body.json"), str(port)]
            proc = start([*cmd, args.log_level, http], tmp / f"bare-{http}.log")
            servers.append(Server(f"bare {http}", port, proc))
            await wait_ready(port, "/_evaldock/health")
        bare_path = paths["evaldock h11"]  # any id: the bare app answers the same bytes

        print(
            f"GET /v1/evaluations/{{id}}: {len(body)} bytes; {args.duration:g} s per run, "
            f"median of {args.repeat}, "
            f"log level {args.log_level}, {os.cpu_count()} CPUs (shared with the load "
            "generator)"
        )
        print(
            "req/s and server CPU us a request of each server; ratios of evaldock over bare "
            "(throughput; CPU: bare us / evaldock us)"
        )
        names = [server.name for server in servers]
        print(
            f"{'clients':>7} "
            + " ".join(f"{name:>19}" for name in names)
            + f" {'ed-h11/bare-h11':>16} {'ed-ht/bare-h11':>15} {'ed-ht/bare-ht':>14} {'errors':>6}"
        )
        for level_no, clients in enumerate(levels):
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
            errors = 0
            for repeat in range(args.repeat):
                # Rotate the order: a neighbour's load on the shared machine drifts.
                shift = (level_no + repeat) % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    path = paths.get(server.name, bare_path)
                    rps, cpu, bad = await rate(
                        server.port, server.proc.pid, path, clients, args.duration
                    )
                    samples[server.name].append((rps, cpu))
                    errors += bad
            results = {
                name: (
                    statistics.median(rps for rps, _ in runs),
                    statistics.median(cpu for _, cpu in runs),
                )
                for name, runs in samples.items()
            }

            print(
                f"{clients:>7} "
                + " ".join(
                    f"{results[name][0]:>9.0f} /{results[name][1]:>5.0f} us" for name in names
                )
                + f" {ratio(results, 'evaldock h11', 'bare h11'):>16}"
                f" {ratio(results, 'evaldock httptools', 'bare h11'):>15}"
                f" {ratio(results, 'evaldock httptools', 'bare httptools'):>14} {errors:>6}",
                flush=True,
            )

        if args.work_duration > 0:
            print(
                f"\nEvaluation throughput: {args.workers} workers create 5-pair evaluations "
                f"and poll each to completion (every 50 ms), {args.work_duration:g} s, "
                "with background pollers"
            )
            print(
                f"{'server':>19} {'pollers':>8} {'evals/s':>8} {'POST p50 ms':>12} "
                f"{'POST p99 ms':>12} {'POSTs':>6} {'polls/s':>8} {'errors':>7}"
            )
            for background in (50, 200):
                for ours in servers[: len(PARSERS)]:
                    r = await work_under_load(
                        ours.port, paths[ours.name], background, args.work_duration, args.workers
                    )
                    print(
                        f"{ours.name:>19} {background:>8} {r['evals_per_s']:>8.2f} "
                        f"{r['post_p50_ms']:>12.1f} {r['post_p99_ms']:>12.1f} "
                        f"{r['posts']:>6.0f} {r['polls_per_s']:>8.0f} {r['poll_errors']:>7.0f}",
                        flush=True,
                    )
    finally:
        for server in servers:
            stop_process(server.proc)
        if args.keep:
            print(f"logs and data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="50,100,200", help="client counts (phase 1)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per phase-1 run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="phase-1 runs per server and level (medians)"
    )
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
