"""HTTP/1.1 serving: uvicorn's protocols (httptools or h11) with a request-receipt
deadline and a connection cap.

Why it exists: uvicorn bounds nothing about how long a request may take to *arrive*.
Its keep-alive timer is armed only after a response and cancelled by every byte
received; a fresh connection has no timer at all; and ASGI middleware runs only after
the headers are parsed. So 2,000 clients that each send half a header line (or a body
one byte a minute) hold 2,000 connections forever. Here:

- the headers must be complete within ``header_timeout`` seconds of the request's
  start (its first byte; for a fresh connection, the connect), and the body within
  ``body_timeout`` seconds of that same start, else the connection is closed, after a
  ``408 Request Timeout`` where the client sent something and no response has begun
  (a connection that never sent a byte is closed silently, as nginx does: browsers
  preconnect);
- time the server itself stops reading (flow control, because the application has
  not consumed 64 KiB of body yet) does not count against the client;
- at most ``max_connections`` connections are open; one more is answered ``503``
  with ``Retry-After`` and closed at once, before it costs anything else.

uvicorn's own ``limit_concurrency`` is left unset: it counts connections *and*
in-flight requests only when a request's headers have arrived, so it never bounds the
slow connections above, and past its limit it answers 503 to every request, those of
clients already connected (the 200 keep-alive pollers) included. Refusing at connect
time bounds file descriptors and memory and leaves established clients alone; keep
``max_connections`` well above the expected pollers (the default, 2,000, is 10x the
200 that ``scripts/bench_poll.py`` runs).

Both of uvicorn's HTTP/1.1 parsers carry it (``[server] http``, chosen in
:mod:`evaldock.server.http`): httptools (C, what "auto" picks;
:mod:`evaldock.server.http_httptools`) and h11 (pure Python, the fallback where httptools
is not installed: a poll costs 380-470 us of server CPU on it against 250-300 on
httptools, ``scripts/bench_poll.py``). uvicorn's own protocol classes are never used:
they would drop the deadline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

from .readgate import IDLE_KEY

# A connection's first request: as patient as any (it has not polled yet).
IDLE_UNKNOWN = float("inf")

log = logging.getLogger("evaldock.http")

# While the server (not the client) has paused reading, check back this often.
_PAUSED_RECHECK_S = 1.0
# A flood of refused connections logs one line per this many seconds.
_REFUSAL_LOG_EVERY_S = 10.0
_refusals = {"logged_at": float("-inf")}


@dataclass(frozen=True)
class ReceiptLimits:
    """The ``[server]`` settings ``header_timeout``, ``body_timeout``, ``max_connections``."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 2_000

    def __post_init__(self) -> None:
        if not self.header_timeout > 0:
            raise ValueError(f"[server] header_timeout must be > 0, not {self.header_timeout}")
        if not self.body_timeout >= self.header_timeout:
            raise ValueError(
                f"[server] body_timeout ({self.body_timeout}) must be at least "
                f"[server] header_timeout ({self.header_timeout}): both count from the "
                "request's start"
            )
        if self.max_connections < 1:
            raise ValueError(f"[server] max_connections must be >= 1, not {self.max_connections}")


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the receipt limits the protocol reads."""

    receipt_limits: ReceiptLimits = ReceiptLimits()


def _raw_response(status: int, reason: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        f"{extra}"
        "connection: close\r\n\r\n"
    ).encode() + body


class _TimedFlowControl(FlowControl):
    """uvicorn's flow control, counting the seconds reading was paused by the server."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(transport)
        self.loop = loop
        self._paused_total = 0.0
        self._paused_at: float | None = None

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._paused_at = self.loop.time()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self._paused_at is not None:
            self._paused_total += self.loop.time() - self._paused_at
            self._paused_at = None
        super().resume_reading()

    def paused_seconds(self) -> float:
        """Seconds reading has been paused on this connection, so far."""
        running = self.loop.time() - self._paused_at if self._paused_at is not None else 0.0
        return self._paused_total + running


class ReceiptDeadline:
    """The receipt deadline and the connection cap, for either of uvicorn's HTTP/1.1
    protocols (:class:`ReceiptDeadlineProtocol` over h11,
    :class:`~evaldock.server.http_httptools.HttpToolsReceiptProtocol` over httptools).

    The protocol says which part of a request is arriving (:meth:`_phase`) and whether
    the client sent any of it (:meth:`_sent_something`); this class does the timing.
    """

    # Provided by uvicorn's protocol classes.
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    connections: set[Any]
    client: tuple[str, int] | None
    cycle: Any
    flow: FlowControl

    limits: ReceiptLimits
    timed_flow: _TimedFlowControl
    _request_started: float | None  # loop time of the request's start; None between requests
    _paused_before: float  # timed_flow.paused_seconds() at the request's start
    _upgraded: bool  # handed to a WebSocket protocol: no longer ours to time
    _deadline: asyncio.TimerHandle | None
    _deadline_at: float | None
    # For the read gate: how long the connection sat idle before this request.
    _last_response_at: float | None
    _idle_before: float

    def _init_receipt(self, config: uvicorn.Config) -> None:
        self.limits = config.receipt_limits if isinstance(config, ServerConfig) else ReceiptLimits()
        self._request_started = None
        self._paused_before = 0.0
        self._upgraded = False
        self._deadline = None
        self._deadline_at = None
        self._last_response_at = None
        self._idle_before = 0.0

    def _phase(self) -> str | None:
        """The part of a request now arriving ("headers", "body"), or None between requests."""
        raise NotImplementedError

    def _sent_something(self) -> bool:
        """Whether the client sent bytes of the request whose headers are still due."""
        raise NotImplementedError

    def _accept(self, transport: asyncio.Transport) -> None:
        """After uvicorn's ``connection_made``: refuse past the cap, else start the clock."""
        self.timed_flow = _TimedFlowControl(transport, self.loop)
        self.flow = self.timed_flow
        if len(self.connections) > self.limits.max_connections:
            now = self.loop.time()
            if now - _refusals["logged_at"] >= _REFUSAL_LOG_EVERY_S:  # not once per client
                log.warning(
                    "Refusing connections: %d open, the limit set by [server] max_connections",
                    self.limits.max_connections,
                )
                _refusals["logged_at"] = now
            transport.write(
                _raw_response(
                    503,
                    "Service Unavailable",
                    "Too many open connections; retry shortly.\n",
                    "retry-after: 1\r\n",
                )
            )
            transport.close()
            return
        self._start_request()
        self._watch()

    def _start_request(self) -> None:
        self._request_started = self.loop.time()
        self._paused_before = self.timed_flow.paused_seconds()
        last = self._last_response_at
        self._idle_before = self._request_started - last if last is not None else IDLE_UNKNOWN

    def _due(self, phase: str) -> float:
        """When ``phase`` must be complete: the setting's seconds after the request's
        start, plus the seconds the server paused reading since (its delay, not the
        client's)."""
        assert self._request_started is not None
        limit = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
        paused = self.timed_flow.paused_seconds() - self._paused_before
        return self._request_started + limit + paused

    def _arm(self, at: float) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_at(at, self._expired)
        self._deadline_at = at

    def _watch(self) -> None:
        if self._upgraded or self.transport is None or self.transport.is_closing():
            return
        phase = self._phase()
        if phase is None:
            # The armed timer stays: when it fires, _expired finds nothing due (or the
            # next request's due) and acts on that. Re-arming per request cost a timer
            # handle and a heap push each poll.
            return
        at = self._due(phase)
        if self._deadline_at is None or at < self._deadline_at:
            self._arm(at)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_at = None

    def _expired(self) -> None:
        self._deadline = None
        self._deadline_at = None
        if self.transport.is_closing():
            return
        phase = self._phase()
        if phase is None:
            return
        if self.timed_flow.read_paused:
            # The application has not read what arrived: the server's delay, not the client's.
            self._arm(self.loop.time() + _PAUSED_RECHECK_S)
            return
        at = self._due(phase)
        if at > self.loop.time():
            self._arm(at)  # credited with time spent paused
            return
        setting, limit = (
            ("header_timeout", self.limits.header_timeout)
            if phase == "headers"
            else ("body_timeout", self.limits.body_timeout)
        )
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info(
            "Closed the connection from %s: request %s not received within %g s ([server] %s)",
            client,
            phase,
            limit,
            setting,
        )
        cycle = self.cycle  # this request's while its body arrives, else the one before
        if phase == "body":
            responding = cycle is not None and cycle.response_started
            if cycle is not None and not cycle.response_complete:
                # The application's receive() returns http.disconnect; its sends are dropped.
                cycle.disconnected = True
                cycle.message_event.set()
        else:  # a 408 after the previous answer, never inside one still being written
            responding = (
                cycle is not None and cycle.response_started and not cycle.response_complete
            )
        sent_something = phase == "body" or self._sent_something()
        if sent_something and not responding:
            self.transport.write(
                _raw_response(
                    408,
                    "Request Timeout",
                    f"Request {phase} not received within {limit:g} s.\n",
                )
            )
        self.transport.close()


class ReceiptDeadlineProtocol(ReceiptDeadline, H11Protocol):
    """:class:`H11Protocol` (pure Python) with the receipt deadline and the connection cap."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._init_receipt(config)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._accept(transport)

    def data_received(self, data: bytes) -> None:
        if self._request_started is None:
            self._start_request()  # the first byte of the next request
        super().data_received(data)
        self._tag_scope()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._last_response_at = self.loop.time()
        super().on_response_complete()  # may start the next, pipelined request
        self._tag_scope()
        self._watch()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._upgraded = True
        self._cancel_deadline()
        super().handle_websocket_upgrade(event)

    # -- what h11 says of the request ----------------------------------------------------------

    def _phase(self) -> str | None:
        their = self.conn.their_state
        if their is h11.SEND_BODY:
            return "body"
        if their is h11.IDLE:
            if self._request_started is None and self.conn.trailing_data[0]:
                self._start_request()  # pipelined bytes, now unpaused
            return "headers" if self._request_started is not None else None
        self._request_started = None  # received whole (DONE, MUST_CLOSE) or closing
        return None

    def _sent_something(self) -> bool:
        return bool(self.conn.trailing_data[0])

    def _tag_scope(self) -> None:
        """Tell the read gate how long the connection idled before the request it just
        parsed (uvicorn builds the scope; its task starts on the next loop iteration)."""
        scope = getattr(self, "scope", None)
        if scope is not None and IDLE_KEY not in scope:  # a new request's scope
            scope[IDLE_KEY] = self._idle_before


# The values of [server] http.
