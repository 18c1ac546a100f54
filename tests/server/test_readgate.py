"""server/readgate.py: reads start at most ``per_turn`` per event-loop turn, patient
clients before tight loops, writes never wait; counted in loop turns, not timed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from evaldock.server.readgate import IDLE_KEY, PATIENT_S, ReadGate


class _Turns:
    """Counts loop turns: a callback that re-schedules itself runs once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self.turn += 1
        self._handle = asyncio.get_running_loop().call_soon(self.start)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


def _scope(method: str, idle: float | None = None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": "/x", "headers": []}
    if idle is not None:
        scope[IDLE_KEY] = idle
    return scope


async def _noop_receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _noop_send(message: Any) -> None:
    return None


def _run(per_turn: int, scopes: list[dict[str, Any]]) -> list[tuple[int, str, float | None]]:
    """Start every request at once; return (turn it entered the app, method, idle)."""

    async def go() -> list[tuple[int, str, float | None]]:
        turns = _Turns()
        entered: list[tuple[int, str, float | None]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            entered.append((turns.turn, scope["method"], scope.get(IDLE_KEY)))

        gate = ReadGate(app, per_turn)
        turns.start()
        await asyncio.gather(*(gate(s, _noop_receive, _noop_send) for s in scopes))
        turns.stop()
        assert gate.waiting() == 0
        return entered

    return asyncio.run(go())


def test_at_most_per_turn_reads_start_in_any_turn() -> None:
    entered = _run(4, [_scope("GET", 0.0) for _ in range(40)])
    assert len(entered) == 40
    per_turn: dict[int, int] = {}
    for turn, _, _ in entered:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    # At most twice the allowance (the allowance of a turn, and the one refilled in it).
    assert max(per_turn.values()) <= 8
    assert len(per_turn) >= 40 // 8


def test_writes_never_wait() -> None:
    scopes = [_scope("GET", 0.0) for _ in range(40)] + [_scope("POST", 0.0) for _ in range(5)]
    entered = _run(2, scopes)
    first_turn = min(turn for turn, _, _ in entered)
    posts = [turn for turn, method, _ in entered if method == "POST"]
    assert posts == [first_turn] * 5


def test_patient_clients_go_before_tight_loops() -> None:
    eager = [_scope("GET", 0.001) for _ in range(30)]
    patient = [_scope("GET", PATIENT_S * 5) for _ in range(3)]
    entered = _run(2, eager + patient)
    order = [idle for _, _, idle in entered]
    # Two eager ones got the first turn's places; the patient ones come right after.
    assert order[2:5] == [PATIENT_S * 5] * 3
    # In-process clients carry no idle time: patient.
    assert all(turn >= 0 for turn, _, _ in _run(1, [_scope("GET")] * 3))


def test_zero_disables_and_cancelled_waiters_leave_no_trace() -> None:
    entered = _run(0, [_scope("GET", 0.0) for _ in range(20)])
    assert len({turn for turn, _, _ in entered}) == 1

    async def go() -> None:
        started = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            started.set()

        gate = ReadGate(app, 1)
        tasks = [asyncio.create_task(gate(_scope("GET", 0.0), _noop_receive, _noop_send))]
        tasks += [
            asyncio.create_task(gate(_scope("GET", 0.0), _noop_receive, _noop_send))
            for _ in range(5)
        ]
        await asyncio.sleep(0)
        assert gate.waiting() == 5
        for task in tasks[1:4]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 3
        assert gate.waiting() == 0
        # The gate still admits.
        await asyncio.wait_for(gate(_scope("GET", 0.0), _noop_receive, _noop_send), 1)

    asyncio.run(go())


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reads_are_gated(method: str) -> None:
    entered = _run(1, [_scope(method, 0.0) for _ in range(6)])
    assert len({turn for turn, _, _ in entered}) >= 3
