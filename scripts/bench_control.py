"""What the control plane costs a poll: evaldock with its defaults (journal recording,
metrics counting, request ids) against the same server with ``[control] enabled =
false``, in alternating runs of keep-alive pollers on a completed evaluation.

Prints each run and the medians; the cost is 1 - on/off (target: at most 10%).

    .venv/bin/python scripts/bench_control.py --runs 5 --clients 100 --duration 4
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_poll as bp  # a sibling script, not a package


async def serve(tmp: Path, name: str, env: dict[str, str]) -> tuple[object, int, str]:
    port = bp.free_port()
    cmd = [
        *bp.evaldock_command(argparse.Namespace(evaldock="")),
        "serve",
        "--mode",
        "mock",
        "--data",
        str(tmp / name),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    os.environ.update(env)
    try:
        proc = bp.start(cmd, tmp / f"{name}.log")
    finally:
        for key in env:
            os.environ.pop(key, None)
    await bp.wait_ready(port, "/_evaldock/health")
    conn = await bp.Conn.open(port)
    eval_id, _ = await bp.create_evaluation(conn)
    await bp.poll_until_done(conn, eval_id, interval=0.1, timeout=120)
    conn.close()
    return proc, port, f"/v1/evaluations/{eval_id}"


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-control-"))
    procs = []
    try:
        on = await serve(tmp, "on", {})
        off = await serve(tmp, "off", {"EVALDOCK_CONTROL__ENABLED": "false"})
        procs = [on[0], off[0]]
        print(f"{args.clients} keep-alive pollers, {args.duration:g} s per run, alternating")
        print(
            f"{'run':>4} {'on req/s':>9} {'off req/s':>10} {'on CPU us/req':>14} "
            f"{'off CPU us/req':>15}"
        )
        rates: dict[str, list[float]] = {"on": [], "off": []}
        cpus: dict[str, list[float]] = {"on": [], "off": []}
        for i in range(args.runs):
            # Which goes first alternates: a machine that slows down mid-run hits both.
            order = [("on", on), ("off", off)] if i % 2 == 0 else [("off", off), ("on", on)]
            for name, (proc, port, path) in order:
                r, cpu, _ = await bp.rate(port, proc.pid, path, args.clients, args.duration)  # type: ignore[attr-defined]
                rates[name].append(r)
                cpus[name].append(cpu)
            print(
                f"{i + 1:>4} {rates['on'][-1]:>9.0f} {rates['off'][-1]:>10.0f} "
                f"{cpus['on'][-1]:>14.0f} {cpus['off'][-1]:>15.0f}",
                flush=True,
            )
        m_on, m_off = statistics.median(rates["on"]), statistics.median(rates["off"])
        c_on, c_off = statistics.median(cpus["on"]), statistics.median(cpus["off"])
        print(
            f"median {m_on:>7.0f} {m_off:>10.0f} {c_on:>14.0f} {c_off:>15.0f}   "
            f"cost {100 * (1 - m_on / m_off):.1f}% of requests/s, "
            f"{100 * (1 - c_off / c_on):.1f}% of CPU a request"
        )
    finally:
        for proc in procs:
            bp.stop_process(proc)  # type: ignore[arg-type]
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=4.0)
    asyncio.run(main(parser.parse_args()))
