"""Secrets kept out of logs: API keys, authorization headers, signed-URL signatures.

What counts as secret here: the value of every credential header (the whole value:
``Bearer <key>``, a BCE ``authorization`` string with its access key id and signature),
and every capability query parameter (a signed URL's ``signature`` opens the upload
to anyone who reads the log). ``expires`` stays: it is not a capability and it tells
the reader why a URL stopped working.

Used by the access log (:class:`AccessLogFilter`, installed by
:func:`evaldock.server.http.uvicorn_config`) and by anything that prints a request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "****"
# Shorter keys are masked whole: showing 4 of 11 characters would give away too much.
_SHOWN_FROM = 12

# One list of secret names, for headers and query parameters alike (compared lower case,
# ``_`` read as ``-``): the journal and the access log both mask through it, so a name
# added here is masked everywhere a request is shown.
SECRET_NAMES = frozenset(
    {
        "authorization",  # Bearer keys, BCE's bce-auth-v1/... strings
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "key",
        "sig",
        "sk",  # a Baidu secret key (AK/SK) passed as a parameter
        "x-evaldock-control-key",  # resets state, injects faults, reads the journal
        "x-goog-api-key",
        "x-amz-credential",
        "x-goog-credential",
    }
)
# Any name containing one of these is secret too: ``signature``, ``x-amz-signature``,
# ``access_token``, ``x-bce-security-token``, ``client_secret``, ``password``.
_SECRET_PARTS = ("signature", "token", "secret", "password")


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter called ``name`` carries a credential."""
    lowered = name.lower().replace("_", "-")
    return lowered in SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def mask_key(value: str) -> str:
    """``****`` for a key under 12 characters, else its first and last two: ``ab****yz``."""
    if len(value) < _SHOWN_FROM:
        return MASK
    return f"{value[:2]}{MASK}{value[-2:]}"


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy with every credential header's whole value masked (names case-insensitive)."""
    return {
        name: mask_key(value) if is_secret_name(name) else value for name, value in headers.items()
    }


def mask_query(query: str) -> str:
    """``query`` (without ``?``) with every capability parameter's value replaced by ``****``.

    Works on the raw text, so the other parameters keep their exact spelling.
    """
    if not query:
        return query
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and is_secret_name(unquote_plus(name)):
            parts[i] = f"{name}={MASK}"
    return "&".join(parts)


def mask_url(url: str) -> str:
    """A URL or ``path?query`` with its capability parameters masked (and any userinfo)."""
    if "?" not in url and "@" not in url:
        return url  # the common case: nothing to mask, no parsing
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host: mask the query text by hand
        path, _, rest = url.partition("?")
        query, hash_, fragment = rest.partition("#")
        return f"{path}?{mask_query(query)}{hash_}{fragment}"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc, query=mask_query(parts.query)))


class AccessLogFilter(logging.Filter):
    """Masks the URL in uvicorn's access log lines (``'%s - "%s %s HTTP/%s" %d'``).

    The third argument is the path with its query string; other records pass through
    with any argument that looks like a URL masked.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(
                mask_url(a) if isinstance(a, str) and _looks_like_url(a) else a for a in args
            )
        return True


def _looks_like_url(text: str) -> bool:
    return ("?" in text or "@" in text) and (
        text.startswith("/") or text.startswith(("http://", "https://"))
    )


def install_access_log_filter(logger_name: str = "uvicorn.access") -> None:
    """Attach :class:`AccessLogFilter` to the access logger, once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, AccessLogFilter) for f in logger.filters):
        logger.addFilter(AccessLogFilter())
