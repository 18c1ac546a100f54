"""The receipt deadline and connection cap over uvicorn's httptools protocol (llhttp,
in C): ``[server] http = "httptools"``, and "auto" where httptools is installed.

The timing is :class:`evaldock.server.receipt.ReceiptDeadline`'s; this module says what
the parser has seen. h11 parses only what the application asks for next (pipelined
bytes wait unparsed), while llhttp parses everything that arrives, calling back as it
goes: a request begins (``on_message_begin``), its headers end (``on_headers_complete``),
it ends (``on_message_complete``). So the phase is tracked from those callbacks, and a
pipelined request, parsed while the one before it is still being answered, is told to
the read gate as not idle (h11 starts it only once that answer is sent).

Importing this module needs httptools; :func:`evaldock.server.http.protocol_class`
falls back to h11 under "auto" when it is missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .readgate import IDLE_KEY
from .receipt import ReceiptDeadline


class HttpToolsReceiptProtocol(ReceiptDeadline, HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with the receipt deadline and the connection cap."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._init_receipt(config)
        self._in_body = False  # headers parsed, the body not yet whole
        self._sent = False  # bytes of the request now arriving were received

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._accept(transport)

    def data_received(self, data: bytes) -> None:
        if self._request_started is None:
            self._start_request()  # the first byte of the next request
        self._sent = True
        super().data_received(data)  # a malformed request: 400 and close, there
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._last_response_at = self.loop.time()
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        self._cancel_deadline()
        super().handle_websocket_upgrade()

    # -- llhttp's callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()  # builds the scope
        self._sent = True
        if self._request_started is None:
            self._start_request()
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        cycle = self.cycle  # still the previous request's
        if cycle is not None and not cycle.response_complete:
            scope[IDLE_KEY] = 0.0  # pipelined behind a request being answered: it waited
        else:
            scope[IDLE_KEY] = self._idle_before

    def on_headers_complete(self) -> None:
        self._in_body = True  # until on_message_complete, maybe within this same feed
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._sent = False
        self._request_started = None  # received whole; the next starts with its first byte
        super().on_message_complete()

    # -- what llhttp says of the request --------------------------------------------------------

    def _phase(self) -> str | None:
        if self._request_started is None:
            return None
        return "body" if self._in_body else "headers"

    def _sent_something(self) -> bool:
        return self._sent
