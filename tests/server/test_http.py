"""The receipt deadline and connection cap, over real sockets on 127.0.0.1, on both
HTTP/1.1 parsers ([server] http = "h11" and "httptools"): every test runs on each.

Tiny timeouts (0.3 s for headers, 0.6 s for bodies); every wait is bounded by a socket
timeout well above them, so a server without the deadline fails by timing out here.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from evaldock.server.http import (
    ReceiptDeadlineProtocol,
    ReceiptLimits,
    protocol_class,
    uvicorn_config,
)
from evaldock.server.http_httptools import HttpToolsReceiptProtocol
from evaldock.server.readgate import IDLE_KEY

WAIT = 5.0  # seconds a client waits for the server, far above every deadline here
PROTOCOLS = {"h11": ReceiptDeadlineProtocol, "httptools": HttpToolsReceiptProtocol}


@pytest.fixture(params=sorted(PROTOCOLS))
def http(request: pytest.FixtureRequest) -> str:
    """The [server] http setting a test's server runs with."""
    return str(request.param)


async def ping(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


async def echo(request: Request) -> PlainTextResponse:
    if "slow" in request.query_params:
        await asyncio.sleep(1.2)  # longer than body_timeout, before reading the body
    try:
        body = await request.body()
    except ClientDisconnect:
        return PlainTextResponse("gone", status_code=499)
    return PlainTextResponse(str(len(body)))


async def idle(request: Request) -> PlainTextResponse:
    return PlainTextResponse(repr(request.scope.get(IDLE_KEY)))


APP = Starlette(
    routes=[Route("/ping", ping), Route("/echo", echo, methods=["POST"]), Route("/idle", idle)]
)


@contextmanager
def serving(http: str, **limits: Any) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    options = {"header_timeout": 0.3, "body_timeout": 0.6, **limits}
    config = uvicorn_config(
        APP, "127.0.0.1", port, log_level="warning", access_log=False, http=http, **options
    )
    assert config.http is PROTOCOLS[http]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(WAIT)
        sock.close()


def connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    conn.settimeout(WAIT)
    return conn


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout if it never does."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(conn: socket.socket) -> tuple[int, bytes]:
    """One keep-alive response (content-length framed), leaving what follows unread.

    Reads with ``recv`` alone: a ``conn.makefile()`` reader would keep the descriptor
    open after ``conn.close()`` (the server would never see the close), and a buffered
    one would swallow the pipelined response that follows.
    """
    status = _read_line(conn)
    assert status, "closed by the server"
    length = 0
    while (line := _read_line(conn)) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = b""
    while len(body) < length and (chunk := conn.recv(length - len(body))):
        body += chunk
    return int(status.split()[1]), body


def _read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n") and (byte := conn.recv(1)):
        line += byte
    return line


def test_partial_header_is_closed_with_408(http: str) -> None:
    with serving(http) as port, connect(port) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in answer and answer.endswith(b"within 0.3 s.\n")


def test_header_trickled_byte_by_byte_is_closed(http: str) -> None:
    """Each byte restarts uvicorn's own keep-alive timer; the deadline counts from the start."""
    with serving(http) as port, connect(port) as conn:
        for byte in b"GET /ping HTTP/1.1\r\nHost: x\r\n":
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break  # closed by the server: what the test wants
            time.sleep(0.05)
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408")


def test_silent_connection_is_closed_without_a_response(http: str) -> None:
    with serving(http) as port, connect(port) as conn:
        assert read_until_closed(conn) == b""


def test_slow_body_is_closed_with_408(http: str) -> None:
    with serving(http) as port, connect(port) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408")
    assert answer.endswith(b"Request body not received within 0.6 s.\n")


def test_keep_alive_client_is_unaffected(http: str) -> None:
    """Idle gaps between requests (0.4 s > header_timeout) are the keep-alive timer's."""
    with serving(http) as port, connect(port) as conn:
        for _ in range(4):
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(conn) == (200, b"pong")
            time.sleep(0.4)
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(0.1)
        conn.sendall(b"cd")
        assert read_response(conn) == (200, b"4")
        # Pipelined: two requests in one write.
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        assert read_response(conn) == read_response(conn) == (200, b"pong")


def test_application_slow_to_read_the_body_is_not_the_clients_delay(http: str) -> None:
    body = b"x" * 300_000  # beyond uvicorn's 64 KiB high-water mark: reading pauses
    with serving(http) as port, connect(port) as conn:
        request = b"POST /echo?slow=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        sender = threading.Thread(target=conn.sendall, args=(request + body,))
        sender.start()
        assert read_response(conn) == (200, b"300000")
        sender.join(WAIT)


def test_connections_beyond_max_connections_get_503(http: str) -> None:
    with serving(http, header_timeout=WAIT * 2, body_timeout=WAIT * 2, max_connections=3) as port:
        held = [connect(port) for _ in range(3)]
        for conn in held:  # each is accepted and served
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(conn) == (200, b"pong")
        with connect(port) as extra:
            answer = read_until_closed(extra)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"retry-after: 1" in answer
        held.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the server notices the close on its next loop turn
            with connect(port) as again:
                try:
                    again.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer: tuple[int, bytes] | None = read_response(again)
                except (AssertionError, ConnectionError):
                    answer = None  # refused before the request was read
            if answer == (200, b"pong"):
                break
            assert answer is None or answer[0] == 503, answer
            assert time.monotonic() < deadline, "the freed connection slot was never reused"
            time.sleep(0.05)
        for conn in held:
            conn.close()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match=r"\[server\] header_timeout"):
        ReceiptLimits(header_timeout=0)
    with pytest.raises(ValueError, match=r"\[server\] body_timeout"):
        ReceiptLimits(header_timeout=10, body_timeout=5)
    with pytest.raises(ValueError, match=r"\[server\] max_connections"):
        ReceiptLimits(max_connections=0)


def test_scope_says_how_long_the_connection_idled_before_each_request(http: str) -> None:
    """The read gate's signal: a connection's first request has no history (inf), one
    sent after a pause carries the pause, a pipelined one about nothing."""
    get = b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(http) as port, connect(port) as conn:
        conn.sendall(get)
        assert read_response(conn) == (200, b"inf")
        time.sleep(0.25)
        conn.sendall(get)
        status, body = read_response(conn)
        assert status == 200 and float(body) >= 0.2
        conn.sendall(get + get)  # pipelined: the second waited for the first, not idled
        read_response(conn)
        status, body = read_response(conn)
        assert status == 200 and float(body) < 0.2


def test_body_trickled_byte_by_byte_is_closed(http: str) -> None:
    """Each body byte arrives (0.05 s apart), yet the whole body is due 0.6 s after the
    request's start: the trickle is cut there, not when it ends (5 s on)."""
    with serving(http) as port, connect(port) as conn:
        conn.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            try:
                conn.sendall(b"x")
            except OSError:
                break  # closed by the server: what the test wants
            time.sleep(0.05)
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408")
    assert answer.endswith(b"Request body not received within 0.6 s.\n")


def test_pipelined_requests_are_answered_in_order(http: str) -> None:
    post = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    get = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(http) as port, connect(port) as conn:
        conn.sendall(get + post + get + post)
        answers = [read_response(conn) for _ in range(4)]
    assert answers == [(200, b"pong"), (200, b"5"), (200, b"pong"), (200, b"5")]


def test_pipelined_request_left_unfinished_is_closed(http: str) -> None:
    """The first request is answered; the half-sent second one behind it gets the 408."""
    with serving(http) as port, connect(port) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost:")
        assert read_response(conn) == (200, b"pong")
        answer = read_until_closed(conn)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b"Request headers not received within 0.3 s.\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Header Name: y\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ],
    ids=["request-line", "header-name", "content-length", "tls-hello"],
)
def test_malformed_request_gets_400_and_the_server_keeps_serving(
    http: str, request_bytes: bytes
) -> None:
    with serving(http) as port:
        with connect(port) as conn:
            conn.sendall(request_bytes)
            answer = read_until_closed(conn)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        with connect(port) as conn:
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(conn) == (200, b"pong")


def test_slow_connections_hold_cap_slots_only_until_their_deadline(http: str) -> None:
    """Two slow-loris connections fill a cap of 2: a third is refused with 503 until
    the header deadline cuts them, then served."""
    with serving(http, max_connections=2) as port:
        slow = [connect(port) for _ in range(2)]
        for conn in slow:
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost")
        time.sleep(0.05)  # both accepted before the third connects
        with connect(port) as extra:
            assert read_until_closed(extra).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        for conn in slow:
            assert read_until_closed(conn).startswith(b"HTTP/1.1 408")
            conn.close()
        deadline = time.monotonic() + WAIT
        while True:  # the server notices the closes on its next loop turn
            with connect(port) as again:
                try:
                    again.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer: tuple[int, bytes] | None = read_response(again)
                except (AssertionError, ConnectionError):
                    answer = None
            if answer == (200, b"pong"):
                break
            assert answer is None or answer[0] == 503, answer
            assert time.monotonic() < deadline, "the slots of the cut connections were never freed"
            time.sleep(0.05)


def test_http_setting_picks_the_parser() -> None:
    assert protocol_class("auto") is HttpToolsReceiptProtocol  # httptools is a dependency
    assert protocol_class("httptools") is HttpToolsReceiptProtocol
    assert protocol_class("h11") is ReceiptDeadlineProtocol
    with pytest.raises(ValueError, match=r"\[server\] http must be one of auto, httptools, h11"):
        protocol_class("uvloop")


def test_an_evaldock_app_brings_its_http_setting() -> None:
    """Without ``http=``, uvicorn_config reads [server] http off the app's settings
    (``app.state.ctx.settings``, as create_app leaves them; EVALDOCK_SERVER__HTTP too)."""
    from types import SimpleNamespace

    from evaldock.server.load import load_settings

    def app_with(environ: dict[str, str]) -> Any:
        ctx = SimpleNamespace(settings=load_settings(None, {}, environ=environ))
        return SimpleNamespace(state=SimpleNamespace(ctx=ctx))

    def chosen(app: Any) -> Any:
        return uvicorn_config(app, "127.0.0.1", 0, log_level="warning", access_log=False).http

    assert chosen(app_with({})) is HttpToolsReceiptProtocol  # the default, auto
    assert chosen(app_with({"EVALDOCK_SERVER__HTTP": "h11"})) is ReceiptDeadlineProtocol
    assert chosen(app_with({"EVALDOCK_SERVER__HTTP": "httptools"})) is HttpToolsReceiptProtocol
    assert chosen(APP) is HttpToolsReceiptProtocol  # not evaldock's: auto
    with pytest.raises(ValueError, match=r"\[server\] http must be one of"):
        chosen(app_with({"EVALDOCK_SERVER__HTTP": "fast"}))
