"""uvicorn's config for evaldock: which HTTP/1.1 protocol serves (``[server] http``) and
the receipt limits it enforces (the protocols and the why: :mod:`evaldock.server.receipt`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from .masking import install_access_log_filter
from .receipt import ReceiptDeadlineProtocol, ReceiptLimits, ServerConfig

__all__ = [
    "HTTP_IMPLEMENTATIONS",
    "ReceiptDeadlineProtocol",
    "ReceiptLimits",
    "protocol_class",
    "uvicorn_config",
]

HTTP_IMPLEMENTATIONS = ("auto", "httptools", "h11")


def protocol_class(http: str) -> type[asyncio.Protocol]:
    """The receipt-deadline protocol for ``[server] http``: "httptools" (uvicorn's C
    parser), "h11" (pure Python, ~150 us more server CPU a poll), or "auto" (httptools
    where it is installed, as uvicorn itself picks)."""
    if http not in HTTP_IMPLEMENTATIONS:
        raise ValueError(
            f"[server] http must be one of {', '.join(HTTP_IMPLEMENTATIONS)}, not {http!r}"
        )
    if http == "h11":
        return ReceiptDeadlineProtocol
    try:
        from .http_httptools import HttpToolsReceiptProtocol
    except ImportError:
        if http == "httptools":
            raise ValueError(
                '[server] http = "httptools" needs the httptools package: '
                'pip install httptools (or set [server] http = "auto")'
            ) from None
        return ReceiptDeadlineProtocol
    return HttpToolsReceiptProtocol


def _app_http_setting(app: Any) -> str:
    """``[server] http`` of an evaldock app (its settings ride on ``app.state.ctx``);
    "auto" for any other app."""
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    server = getattr(getattr(ctx, "settings", None), "server", None)
    value = getattr(server, "http", "auto")
    return value if isinstance(value, str) else "auto"


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    *,
    log_level: str,
    header_timeout: float = ReceiptLimits.header_timeout,
    body_timeout: float = ReceiptLimits.body_timeout,
    max_connections: int = ReceiptLimits.max_connections,
    http: str | None = None,
    access_log: bool = True,
    **uvicorn_options: Any,
) -> uvicorn.Config:
    """A uvicorn config serving ``app`` with the receipt deadline and connection cap.

    Run it with ``uvicorn.Server(config).run()``. ``http`` picks the HTTP/1.1 parser
    (:func:`protocol_class`); None: the app's ``[server] http`` setting, "auto" for an
    app without evaldock's settings. ``uvicorn_options`` pass through
    (``timeout_keep_alive``, ``fd`` ...). The access log, when on, masks signed-URL
    signatures (:class:`evaldock.server.masking.AccessLogFilter`).
    """
    limits = ReceiptLimits(header_timeout, body_timeout, max_connections)
    protocol = protocol_class(http if http is not None else _app_http_setting(app))
    uvicorn_options.setdefault("lifespan", "on")
    config = ServerConfig(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        http=protocol,
        **uvicorn_options,
    )
    config.receipt_limits = limits
    if access_log:
        install_access_log_filter()
    return config
