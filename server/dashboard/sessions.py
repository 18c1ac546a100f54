"""Who is logged in to the dashboard: random session ids kept in memory.

The cookie holds a random id (32 bytes, ``secrets.token_urlsafe``), never the control
key: a cookie that leaks (a proxy log, a shared profile) opens one session, which
expires and which logout ends, not the key. Sessions live in this process only, so a
restart logs everyone out (one login again: acceptable for a development server).
Each session carries its own CSRF token, put in every state-changing form and compared
in constant time on submit.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "evaldock_ui"
# Before login there is no session: the login form's token rides in its own cookie
# (double submit), so a page elsewhere cannot log a browser in to its own session.
LOGIN_COOKIE = "evaldock_ui_login"
# A working day: long enough not to interrupt a person, short enough that a forgotten
# browser does not stay in for ever.
TTL_SECONDS = 8 * 3600
# Each login adds ~200 bytes; past this many the oldest goes (a login loop cannot grow
# the process without bound).
MAX_SESSIONS = 1000


@dataclass
class Session:
    id: str
    csrf: str
    expires: float
    flash: str = ""  # what the last form did, shown once on the next page


class Sessions:
    def __init__(self, ttl: float = TTL_SECONDS, limit: int = MAX_SESSIONS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self) -> Session:
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.monotonic() + self.ttl
        )
        self._by_id[session.id] = session
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if session.expires < time.monotonic():
            del self._by_id[session_id]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())
