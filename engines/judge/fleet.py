"""A fleet of OpenAI-compatible servers (vLLM replicas) seen from one client.

Which server takes the next request: the one with the fewest requests outstanding
(ties: the one sent fewest so far, then list order), so a slow server, whose requests
stay in flight longer, gets fewer; a server below its ``per_url_concurrency`` only. A
server that fails (connection error, timeout, 5xx) is taken out at once and health-checked
(``GET {url}/models``) after ``eject_seconds``, doubling on each further failure up to
``eject_max_seconds`` (with jitter, so a fleet's clients do not probe in step); a check
that answers puts it back, and its next successful request resets the backoff. A server
whose ``/models`` answers while its completions keep failing is thus tried at ever longer
intervals, not every time. When every server is out, requests go to all of them (as
Envoy's panic mode does): better a request that fails with the server's own error than a
judge that waits forever.

Counters per URL (requests, failures, outstanding, latency, up) are kept in plain ints and
turned into Prometheus families at scrape time by :func:`collect` (evaldock's
``/metrics``); the ``url`` label has any credentials removed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import random
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from evaldock.engines.errors import EngineUnavailable

# Seconds; a judgement takes ~0.05 s on a GPU and ~1 s on 2 CPU cores (docs/real-mode.md),
# a long generation tens of seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EJECT_SECONDS = 1.0
EJECT_MAX_SECONDS = 30.0


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment: safe as a metric label."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(eq=False)
class Server:
    """One base URL and what the client knows of it."""

    url: str
    label: str
    limit: int  # requests in flight at most (0: no limit of its own)
    up: bool = True
    outstanding: int = 0
    sent: int = 0
    requests: int = 0  # answered or failed, counted when done
    failures: int = 0
    ejections: int = 0  # consecutive times taken out; a success resets it
    retry_at: float = 0.0  # monotonic time of the next health check while down
    checks: int = 0
    # per-bucket counts (+Inf last) and the sum of seconds
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    seconds: float = 0.0

    def has_room(self) -> bool:
        return not self.limit or self.outstanding < self.limit


HealthCheck = Callable[[str], Awaitable[bool]]


class Fleet:
    """Picks a server per request, takes failing ones out and brings them back.

    ``check(url)`` is the health check (True: healthy); it runs in a background task of
    the loop that first took a server out, started on demand and ended by :meth:`aclose`.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        check: HealthCheck,
        per_url_concurrency: int = 0,
        eject_seconds: float = EJECT_SECONDS,
        eject_max_seconds: float = EJECT_MAX_SECONDS,
    ) -> None:
        if per_url_concurrency < 0:
            raise EngineUnavailable(
                f"[judge] per_url_concurrency = {per_url_concurrency}",
                "set it to 0 (no limit per server) or more",
            )
        if eject_seconds <= 0 or eject_max_seconds < eject_seconds:
            raise EngineUnavailable(
                f"[judge] eject_seconds = {eject_seconds:g}, "
                f"eject_max_seconds = {eject_max_seconds:g}",
                "set eject_seconds above 0 and eject_max_seconds at least as large",
            )
        self.servers = [Server(u, public_url(u), per_url_concurrency) for u in urls]
        self._check = check
        self.eject_seconds = eject_seconds
        self.eject_max_seconds = eject_max_seconds
        self._order = itertools.count()
        # Requests waiting for a server with room, first come first served.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._monitor: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        _LIVE.add(self)

    def server(self, url: str) -> Server:
        for s in self.servers:
            if s.url == url:
                return s
        raise KeyError(url)

    # -- choosing ---------------------------------------------------------------------
    def _pick(self, avoid: Server | None) -> Server | None:
        candidates = [s for s in self.servers if s.up] or self.servers  # all out: panic
        if avoid is not None and len(candidates) > 1:
            candidates = [s for s in candidates if s is not avoid]
        roomy = [s for s in candidates if s.has_room()]
        if not roomy:
            return None
        return min(roomy, key=lambda s: (s.outstanding, s.sent))

    async def acquire(self, *, avoid: Server | None = None, at: str | None = None) -> Server:
        """A server for one request (counted outstanding until :meth:`release`);
        waits while every candidate is at its ``per_url_concurrency``. ``at`` pins the
        request to that URL, beyond its limit (the start-up probe); ``avoid``: a
        server to pass over when another will do (a retry)."""
        if at is not None:
            chosen = self.server(at)
        else:
            woken = False
            while True:
                # A newcomer queues behind the waiters; a woken waiter looks first.
                picked = self._pick(avoid) if woken or not self._waiters else None
                if picked is not None:
                    chosen = picked
                    break
                waiter = asyncio.get_running_loop().create_future()
                if woken:
                    self._waiters.appendleft(waiter)  # another took the room: keep its turn
                else:
                    self._waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        self._wake_one()  # pass on the room this waiter was given
                    else:
                        with contextlib.suppress(ValueError):  # popped by a wake-up
                            self._waiters.remove(waiter)
                    raise
                woken = True
        chosen.outstanding += 1
        chosen.sent += 1
        return chosen

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # -- outcomes ---------------------------------------------------------------------
    def release(self, server: Server, seconds: float, *, ok: bool, failed: bool) -> None:
        """One request to ``server`` ended after ``seconds``. ``ok``: it answered;
        ``failed``: a failure of the server (connection, timeout, 5xx), which takes it
        out. Neither: a refusal that says nothing of its health (a 4xx, a 429)."""
        server.outstanding -= 1
        server.requests += 1
        server.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        server.seconds += seconds
        if ok:
            server.ejections = 0
            server.up = True  # an answer (to a request sent while all were out) is health
        if failed:
            server.failures += 1
            self._eject(server)
            # Taking the last server out opens them all (panic): everyone may look.
            self._wake_all()
        elif self._waiters:
            self._wake_one()

    def _eject(self, server: Server) -> None:
        if not server.up:
            return  # already out: its health check is scheduled
        server.up = False
        server.ejections += 1
        server.retry_at = time.monotonic() + self._backoff(server)
        self._ensure_monitor()

    def _backoff(self, server: Server) -> float:
        cap = min(self.eject_max_seconds, self.eject_seconds * 2 ** (server.ejections - 1))
        return random.uniform(cap / 2, cap)  # "equal jitter": never sooner than half

    def _ensure_monitor(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._monitor is None or self._monitor.done():
            self._wake = asyncio.Event()
            self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Health-check the servers that are out, each when its backoff ends."""
        assert self._wake is not None
        while True:
            down = [s for s in self.servers if not s.up]
            if not down:
                return
            now = time.monotonic()
            due = [s for s in down if s.retry_at <= now]
            if not due:
                self._wake.clear()
                wait = min(s.retry_at for s in down) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            results = await asyncio.gather(*(self._probe(s) for s in due))
            if any(results):
                self._wake_all()  # room came back: let every waiter look again

    async def _probe(self, server: Server) -> bool:
        server.checks += 1
        try:
            healthy = await self._check(server.url)
        except Exception:  # any failure of the check means "still down"
            healthy = False
        if server.up:
            return False  # a request brought it back meanwhile
        if healthy:
            server.up = True
            return True
        server.ejections += 1
        server.retry_at = time.monotonic() + self._backoff(server)
        return False

    async def aclose(self) -> None:
        _LIVE.discard(self)
        if self._monitor is not None:
            self._monitor.cancel()
            # RuntimeError: the loop that ran it is gone
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._monitor
            self._monitor = None
        self._wake_all()


# Every fleet open in this process, for /metrics (weak: a judge dropped without aclose
# leaves no trace).
_LIVE: weakref.WeakSet[Fleet] = weakref.WeakSet()


@dataclass
class ServerStats:
    """One URL's counters, summed over the open fleets that use it."""

    label: str
    up: bool = True
    limit: int = 0
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    checks: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    seconds: float = 0.0


def stats() -> list[ServerStats]:
    """Per-URL counters of every open fleet (a URL in two fleets: summed; up if up in
    every one)."""
    out: dict[str, ServerStats] = {}
    for fleet in list(_LIVE):
        for s in fleet.servers:
            agg = out.setdefault(s.label, ServerStats(s.label))
            agg.up = agg.up and s.up
            agg.limit += s.limit
            agg.outstanding += s.outstanding
            agg.requests += s.requests
            agg.failures += s.failures
            agg.checks += s.checks
            agg.buckets = [a + b for a, b in zip(agg.buckets, s.buckets, strict=True)]
            agg.seconds += s.seconds
    return sorted(out.values(), key=lambda a: a.label)


def bucket_labels() -> list[str]:
    return [str(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]


def cumulative(buckets: list[int]) -> Iterator[int]:
    return itertools.accumulate(buckets)
