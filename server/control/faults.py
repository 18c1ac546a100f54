"""Fault injection per surface, method and path: what an SDK's retry logic is tested on.

Every fault is bounded — a ``count`` (at most 100 requests) or a time to live (60 s by
default) — and rendered by the surface in its vendor's own envelope, so the client
raises its real error type. Kinds: ``error`` (status + message, or a business code the
surface renders, e.g. Qianfan's ``error_code`` at HTTP 200), ``latency`` (≤ 5 s),
``drop`` (the connection closes mid-response) and ``slow_body`` (the answer trickles
out over ``latency_ms``). Faults never apply to ``/_evaldock/*``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import VendorErrors
from ..pipeline import Call

_NEVER = float("inf")
MAX_LATENCY_MS = 5000
# Every request walks the list: 3,000 faults cost 3.7 ms a request (0.7 ms with none).
# A test injects a handful; 1,000 keeps the walk under a millisecond.
MAX_FAULTS = 1000
# Statuses whose answer has no body: a body sent with them is read as the start of the
# next response on a kept-alive connection, which the client then drops.
BODILESS = frozenset({204, 304})


class TooManyFaults(Exception):
    """The fault list is full; the message says how to make room."""


@dataclass
class Fault:
    id: str
    surface: str
    method: str
    path: str
    kind: str
    status: int
    message: str | None
    code: int | None
    latency_ms: int
    rate: float | None
    remaining: int | None
    expires_at: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "surface": self.surface,
            "method": self.method,
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "message": self.message,
            "code": self.code,
            "latency_ms": self.latency_ms,
            "rate": self.rate,
            "remaining": self.remaining,
            "expires_in": round(max(0.0, self.expires_at - time.monotonic()), 3),
        }

    def matches(self, call: Call) -> bool:
        request = call.request
        return (
            self.surface in ("*", call.surface)
            and self.method in ("*", request.method)
            and fnmatch.fnmatchcase(request.url.path, self.path)
        )


class Faults:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._faults: list[Fault] = []
        self._next_expiry = _NEVER  # the soonest expires_at in the list
        self._spent = False  # a count reached zero since the last prune
        self._ids = itertools.count(1)
        # Its own generator: the process-wide one stays untouched (rate faults, tests).
        self._rng = rng or random.Random()

    def add(self, spec: Mapping[str, Any]) -> Fault:
        if len(self.active()) >= MAX_FAULTS:
            raise TooManyFaults(
                f"the fault list holds at most {MAX_FAULTS:,} faults; clear some with "
                "DELETE /_evaldock/faults (or give them a count or a shorter ttl_seconds)"
            )
        fault = Fault(
            id=f"f{next(self._ids)}",
            surface=str(spec["surface"]),
            method=str(spec.get("method") or "*").upper(),
            path=str(spec.get("path") or "*"),
            kind=str(spec.get("kind") or "error"),
            status=int(spec.get("status") or 500),
            message=spec.get("message"),
            code=spec.get("code"),
            latency_ms=min(int(spec.get("latency_ms") or 0), MAX_LATENCY_MS),
            rate=spec.get("rate"),
            remaining=spec.get("count"),
            expires_at=time.monotonic() + float(spec.get("ttl_seconds") or 60),
        )
        self._faults.append(fault)
        self._next_expiry = min(self._next_expiry, fault.expires_at)
        return fault

    def active(self) -> list[Fault]:
        self._prune()
        return list(self._faults)

    def _prune(self) -> None:
        """Drop spent and expired faults; only rebuilds the list when one may be gone
        (every request calls this: with no fault to drop it is two comparisons)."""
        now = time.monotonic()
        if now < self._next_expiry and not self._spent:
            return
        self._faults = [
            f
            for f in self._faults
            if f.expires_at > now and (f.remaining is None or f.remaining > 0)
        ]
        self._next_expiry = min((f.expires_at for f in self._faults), default=_NEVER)
        self._spent = False

    def clear(self, surface: str | None = None) -> int:
        before = len(self._faults)
        self._faults = [f for f in self._faults if surface is not None and f.surface != surface]
        return before - len(self._faults)

    def remove(self, fault_id: str) -> bool:
        """Take one fault out of the list; False when no active fault has that id."""
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) < before

    def take(self, call: Call) -> Fault | None:
        """The first active fault matching ``call``, its count spent."""
        if not self._faults:
            return None
        self._prune()
        for fault in self._faults:
            if not fault.matches(call):
                continue
            if fault.rate is not None and self._rng.random() >= fault.rate:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                self._spent = fault.remaining <= 0
            return fault
        return None


class DroppedResponse(Response):
    """Starts an answer, then breaks the connection: the client sees it cut off."""

    def __init__(self) -> None:
        super().__init__(b"", status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1024"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"', "more_body": True})
        raise ConnectionAbortedError("connection dropped by an injected fault")


def slowed(response: Response, seconds: float) -> Response:
    """The same answer, its body sent in 10 pieces over ``seconds``."""
    body = bytes(response.body)
    step = max(1, len(body) // 10 + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), step):
            await asyncio.sleep(seconds / 10)
            yield body[start : start + step]

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return StreamingResponse(chunks(), status_code=response.status_code, headers=headers)


class FaultHook:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults

    async def before(self, call: Call, errors: VendorErrors) -> Response | None:
        fault = self.faults.take(call)
        if fault is None:
            return None
        if fault.kind == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            return None
        if fault.kind == "slow_body":
            call.slow_body_seconds = fault.latency_ms / 1000 or 1.0
            return None
        if fault.kind == "drop":
            return DroppedResponse()
        if fault.status in BODILESS:
            return Response(status_code=fault.status)
        message = fault.message or f"Injected fault {fault.id} (evaldock control plane)"
        return errors.injected(fault.status, message, fault.code)

    def after(self, call: Call, response: Response) -> Response | None:
        seconds = call.slow_body_seconds
        if seconds and hasattr(response, "body"):
            return slowed(response, seconds)
        return None
