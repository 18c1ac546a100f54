"""Reads take turns, at the door: each turn of the event loop starts a few of them.

Why: a poll is answered on the event loop itself (no thread hop: server/db.py), so it
runs from routing to its response without ever yielding, and every request that
arrived during one turn of the loop ran to its end in the next. With 200 clients
polling in tight loops a turn held ~70 polls (20 ms and more), and everything else
waited that long at each step: a POST that takes 1 ms took 50 ms, a job's every await
cost a turn, and evaluations completed 3x slower with 200 pollers than with 50. A
limit on reads *in flight* does not help: a read that never yields holds its place
for no time at all.

So GET and HEAD requests start at most ``per_turn`` per loop turn, before routing,
auth or anything else runs; the others wait for a later turn, in order. A turn then
holds at most ``per_turn`` reads (16 polls, ~4 ms; 8 cost ~7% more CPU a poll at 200
clients, in more and shorter turns); writes and the jobs' steps never wait here, and
the reads still use all the time the rest leaves them.

Among waiting reads, a request that arrived after its connection sat idle (a client
that sleeps between polls, as the vendors' clients do) goes before requests sent
back-to-back by tight loops; the HTTP protocol (:mod:`evaldock.server.http`) says which
is which in the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

# Scope key set by the HTTP protocol: seconds the connection was idle before this
# request (absent for in-process test clients: treated as patient).
IDLE_KEY = "evaldock.idle_before"
# Idle at least this long before a request counts as a patient client's: polling
# clients sleep 50 ms and more between polls (the vendors' clients 0.5-5 s), a tight
# loop resends within its own and the server's loop turn, a few ms on a loaded machine.
PATIENT_S = 0.04


class ReadGate:
    """ASGI middleware: at most ``per_turn`` reads enter ``app`` per event-loop turn."""

    def __init__(self, app: ASGIApp, per_turn: int) -> None:
        self.app = app
        self.per_turn = per_turn
        self._left = per_turn  # places left in this turn
        self._refill_pending = False
        self._patient: deque[asyncio.Future[None]] = deque()
        self._eager: deque[asyncio.Future[None]] = deque()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.per_turn > 0 and scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            await self._enter(scope.get(IDLE_KEY, PATIENT_S) >= PATIENT_S)
        await self.app(scope, receive, send)

    def waiting(self) -> int:
        return len(self._patient) + len(self._eager)

    async def _enter(self, patient: bool) -> None:
        if self._left > 0 and not self._patient and not self._eager:
            self._left -= 1
            self._schedule_refill()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._patient if patient else self._eager
        queue.append(waiter)
        self._schedule_refill()
        try:
            await waiter  # _refill gave it a place in the turn it runs in
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):  # _refill may have taken it already
                queue.remove(waiter)
            raise

    def _schedule_refill(self) -> None:
        if not self._refill_pending:
            self._refill_pending = True
            asyncio.get_running_loop().call_soon(self._refill)

    def _refill(self) -> None:
        """Next turn: a fresh allowance, first to those waiting (they resume one turn
        later, so the places they take are counted against that turn's allowance)."""
        self._refill_pending = False
        self._left = self.per_turn
        woken = 0
        for queue in (self._patient, self._eager):
            while queue and woken < self.per_turn:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    woken += 1
        if woken:
            # They run in the coming turn: their places are taken from its allowance.
            self._left = self.per_turn - woken
            self._schedule_refill()
