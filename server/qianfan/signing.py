"""Baidu bce-auth-v1 request signatures, verified exactly as the qianfan SDK makes them.

The SDK (qianfan 0.4.12.3 -> ``baidubce.auth.bce_v1_signer.sign``, bce-python-sdk) signs
every console call like this:

* headers set before signing: ``Content-Type: application/json``, ``Host: <netloc of the
  base URL>``, ``request-source: qianfan_py_sdk_v0.4.12.3``, ``x-bce-date:
  YYYY-MM-DDTHH:MM:SSZ``; *all* of them are signed (``headers_to_sign`` is every header
  name, lower-cased, listed in set order -- not sorted);
* ``Authorization: bce-auth-v1/{AK}/{timestamp}/{expiration}/{h1;h2;...}/{signature}``,
  expiration 300 s by default (``QIANFAN_IAM_SIGN_EXPIRATION_SEC``);
* ``signing_key = hex(HMAC-SHA256(SK, "bce-auth-v1/{AK}/{timestamp}/{expiration}"))`` and
  ``signature = hex(HMAC-SHA256(signing_key as ASCII, string_to_sign))`` with
  ``string_to_sign = METHOD \\n URI \\n query \\n headers``:

  - URI: the path *as the SDK holds it*, not encoded (``/wenxinworkshop/modelrepo/eval/
    report``), without the base URL's own path: the SDK signs the route and then sends it
    to ``base_url + route``, so a server mounted under ``/qianfan`` strips that prefix.
    Baidu's documentation (and the Go/Java SDKs) sign ``UriEncodeExceptSlash(path)``
    instead; for the SDK's ASCII routes both are the same string, and we accept either.
  - query: every parameter, ``enc(k)=enc(v)`` sorted, joined by ``&``; an empty value
    stays (``Action=``, which ``console.utils.call_action(route, "", body)`` sends on v1
    routes). The signer means to skip an ``authorization`` parameter but compares the
    unbound method ``k.lower`` to a string, so it never does; neither do we.
  - headers: ``enc(lower(name)):enc(strip(value))`` sorted, joined by ``\\n``, over the
    signed names *plus every* ``x-bce-*`` header present, skipping empty values; an empty
    signed list means ``host;content-md5;content-length;content-type``.
  - ``enc`` is RFC 3986 percent-encoding of the UTF-8 bytes keeping only
    ``A-Za-z0-9-_.~`` (so ``/`` and ``:`` are encoded), upper-case hex.

The body is not signed, so headers the HTTP library adds after signing (User-Agent,
Accept, Accept-Encoding, Connection, Content-Length) change nothing; an ``x-bce-*``
header added after signing does (it joins the canonical headers), which is how Baidu's
IAM sees such tampering too.

Failures map to the two IAM answers the SDK recognises (``qianfan/resources/requestor/
base.py`` compares ``X-Bce-Error-Message`` verbatim): no usable credential -> 401
``NotFound, cause: Could not find credential.``; anything else -> 403
``SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match``. One
exception: a signature whose lifetime (``expiration``) is longer than ``[qianfan]
max_expiration_seconds`` (1800 by default) is the same 403 ``SignatureDoesNotMatch`` with
a message naming the setting -- the verbatim text would make the SDK blame the secret
key. The client picks the lifetime and the body is not signed, so without that bound a
captured request replays with any body for as long as its signer asked (ten years was
accepted). The timestamp and expiration are checked in integer seconds with their length
bounded first, before any HMAC is computed.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

AUTH_VERSION = "bce-auth-v1"
BCE_PREFIX = "x-bce-"
DEFAULT_EXPIRATION_SECONDS = 300  # qianfan's IAMSignExpirationSeconds default
# The longest signature lifetime accepted unless configured: bce-python-sdk's own default
# expiration (``expiration_in_seconds=1800``; Baidu publishes no upper bound). The body is
# not signed, so a captured request replays with any body until its signature expires.
MAX_EXPIRATION_SECONDS = 1800
DEFAULT_SIGNED_HEADERS = ("host", "content-md5", "content-length", "content-type")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The auth string's timestamp, checked by shape before it is parsed: 20 ASCII characters.
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

_UNRESERVED = frozenset((string.ascii_letters + string.digits + "-_.~").encode())
_ENCODED = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]


class SignatureFailure(StrEnum):
    """Why a request was refused; each maps to one IAM answer (:data:`IAM_ERRORS`)."""

    CREDENTIAL_NOT_FOUND = "credential-not-found"
    SIGNATURE_MISMATCH = "signature-mismatch"
    # A lifetime past [qianfan] max_expiration_seconds: IAM's mismatch, with the reason.
    EXPIRATION_TOO_LONG = "expiration-too-long"


@dataclass(frozen=True, slots=True)
class IamError:
    status: int
    code: str
    message: str
    # The answer's message is ``message`` followed by the failure's reason (which then
    # names its fix); otherwise the fixed text alone, which the SDK matches verbatim.
    with_reason: bool = False

    def text(self, reason: str) -> str:
        return f"{self.message}{reason}" if self.with_reason else self.message

    def headers(self) -> dict[str, str]:
        """What the SDK reads on a non-2xx answer (it matches the message verbatim)."""
        return {"X-Bce-Error-Code": self.code, "X-Bce-Error-Message": self.message}


IAM_ERRORS: dict[SignatureFailure, IamError] = {
    SignatureFailure.CREDENTIAL_NOT_FOUND: IamError(
        401, "NotFound", "NotFound, cause: Could not find credential."
    ),
    SignatureFailure.SIGNATURE_MISMATCH: IamError(
        403,
        "SignatureDoesNotMatch",
        "SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match",
    ),
    # Not the verbatim text: the SDK would then blame the secret key, which is right.
    SignatureFailure.EXPIRATION_TOO_LONG: IamError(
        403, "SignatureDoesNotMatch", "SignatureDoesNotMatch, cause: ", with_reason=True
    ),
}


class SignatureError(Exception):
    """A request failed bce-auth-v1 verification.

    ``kind`` selects the answer (``error.iam`` has status, code and message); ``reason``
    says what exactly was wrong, for the server log only -- the client gets the vendor's
    fixed text, as from Baidu.
    """

    def __init__(self, kind: SignatureFailure, reason: str) -> None:
        super().__init__(f"{kind.value}: {reason}")
        self.kind = kind
        self.reason = reason

    @property
    def iam(self) -> IamError:
        return IAM_ERRORS[self.kind]


def encode(value: str) -> str:
    """``baidubce.utils.normalize_string``: RFC 3986 over UTF-8, only ``A-Za-z0-9-_.~`` kept."""
    return "".join(_ENCODED[b] for b in value.encode("utf-8"))


def encode_except_slash(value: str) -> str:
    """``UriEncodeExceptSlash`` of Baidu's documentation (``normalize_string(p, False)``)."""
    return "/".join(encode(part) for part in value.split("/"))


def canonical_time(moment: datetime) -> str:
    """``x-bce-date`` / auth-string timestamp: UTC, whole seconds, ``Z``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIME_FORMAT)


def canonical_query(query: Iterable[tuple[str, str]]) -> str:
    return "&".join(sorted(f"{encode(k)}={encode(v)}" for k, v in query))


def canonical_headers(headers: Mapping[str, str], signed: Iterable[str]) -> str:
    """Signed headers plus every ``x-bce-*`` one, non-empty values only, sorted."""
    wanted = {h.strip().lower() for h in signed} or set(DEFAULT_SIGNED_HEADERS)
    lines = []
    for name, value in headers.items():
        key = name.strip().lower()
        # bytes.strip, as the signer: ASCII whitespace only.
        raw = value.encode("utf-8").strip()
        if raw and (key.startswith(BCE_PREFIX) or key in wanted):
            lines.append(f"{encode(key)}:{encode(raw.decode('utf-8'))}")
    # The signer sorts the encoded byte strings; the encoding is ASCII, so str order is
    # the same order.
    return "\n".join(sorted(lines))


def string_to_sign(
    method: str,
    canonical_uri: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed: Iterable[str],
) -> str:
    return "\n".join(
        [method, canonical_uri, canonical_query(query), canonical_headers(headers, signed)]
    )


def _signature(secret_key: str, auth_prefix: str, to_sign: str) -> str:
    signing_key = hmac.new(
        secret_key.encode("utf-8"), auth_prefix.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return hmac.new(
        signing_key.encode("ascii"), to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def sign(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    access_key: str,
    secret_key: str,
    *,
    timestamp: datetime,
    expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS,
    signed_headers: Sequence[str] | None = None,
) -> str:
    """The ``Authorization`` value the bce signer gives this request.

    ``path`` is the route as signed (no mount prefix). ``headers`` should already hold
    ``x-bce-date`` (``canonical_time(timestamp)``) and ``host``; ``signed_headers``
    defaults to every header name, lower-cased, as the qianfan SDK signs. ``[]`` gives the
    empty list (the default set is then signed, and the auth string shows ``//``).
    """
    if signed_headers is None:
        signed_headers = [name.lower() for name in headers]
    prefix = f"{AUTH_VERSION}/{access_key}/{canonical_time(timestamp)}/{int(expiration_seconds)}"
    signature = _signature(
        secret_key, prefix, string_to_sign(method, path, query, headers, signed_headers)
    )
    return f"{prefix}/{';'.join(signed_headers)}/{signature}"


@dataclass(frozen=True, slots=True)
class AuthString:
    access_key: str
    timestamp: str
    expiration: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def prefix(self) -> str:
        """What the signing key is derived from, exactly as the client wrote it."""
        return f"{AUTH_VERSION}/{self.access_key}/{self.timestamp}/{self.expiration}"


def parse_authorization(value: str | None) -> AuthString:
    """Split an ``Authorization`` value; a missing or foreign one is "no credential"."""
    if not value or not value.strip():
        raise SignatureError(SignatureFailure.CREDENTIAL_NOT_FOUND, "no Authorization header")
    parts = value.strip().split("/")
    if len(parts) != 6 or parts[0] != AUTH_VERSION or not parts[1]:
        raise SignatureError(
            SignatureFailure.CREDENTIAL_NOT_FOUND,
            f"Authorization is not {AUTH_VERSION}/AK/timestamp/expiration/headers/signature",
        )
    _, access_key, timestamp, expiration, signed, signature = parts
    names = tuple(h for h in signed.split(";") if h)
    return AuthString(access_key, timestamp, expiration, names, signature)


def _epoch_seconds(timestamp: str) -> int | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` -> seconds since 1970 (negative before), None when it is
    not one. Integer arithmetic: year 1 and year 9999 are ordinary numbers here, where
    ``datetime`` arithmetic overflows (which answered 500)."""
    if len(timestamp) != 20 or not _TIMESTAMP.fullmatch(timestamp):
        return None
    try:
        moment = datetime.strptime(timestamp, TIME_FORMAT)
    except ValueError:  # 2024-02-30, 25:00:00, ...
        return None
    return calendar.timegm(moment.timetuple())


def _check_lifetime(
    auth: AuthString, now: datetime, max_skew_seconds: int, max_expiration_seconds: int
) -> None:
    """The signature's timestamp and lifetime, in bounded work: the expiration's digits
    are counted before they are read as a number (``int()`` of 5,000 digits raised)."""
    mismatch = SignatureFailure.SIGNATURE_MISMATCH
    signed_at = _epoch_seconds(auth.timestamp)
    if signed_at is None:
        raise SignatureError(mismatch, f"timestamp {auth.timestamp[:40]!r} is not {TIME_FORMAT}")
    expiration = auth.expiration
    if not expiration.isascii() or not expiration.isdigit():
        raise SignatureError(mismatch, f"expiration {expiration[:40]!r} is not whole seconds")
    digits = expiration.lstrip("0") or "0"
    if len(digits) > len(str(max_expiration_seconds)) or int(digits) > max_expiration_seconds:
        shown = f"{digits} s" if len(digits) <= 20 else f"{len(digits):,} digits"
        raise SignatureError(
            SignatureFailure.EXPIRATION_TOO_LONG,
            f"the signature's expiration ({shown}) is longer than this server accepts "
            f"({max_expiration_seconds} s, setting [qianfan] max_expiration_seconds); sign "
            f"with a shorter one (the SDK's QIANFAN_IAM_SIGN_EXPIRATION_SEC, 300 by default)",
        )
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    current = calendar.timegm(now.astimezone(UTC).timetuple())
    if not signed_at - max_skew_seconds <= current <= signed_at + int(digits) + max_skew_seconds:
        raise SignatureError(
            mismatch,
            f"signed at {auth.timestamp} for {digits} s; now is "
            f"{canonical_time(now)} (allowed skew {max_skew_seconds} s)",
        )


def _strip_prefix(path: str, mount_prefix: str) -> str:
    prefix = mount_prefix.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return path


def verify(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    keys: Mapping[str, str],
    *,
    now: datetime,
    max_skew_seconds: int = 300,
    max_expiration_seconds: int = MAX_EXPIRATION_SECONDS,
    mount_prefix: str = "",
) -> str:
    """Check a request's bce-auth-v1 signature; return its access key.

    ``path``: the decoded request path (Starlette's ``scope["path"]``), mount prefix
    included; ``query``: every parameter as received, empty values and repeats included
    (``request.query_params.multi_items()``); ``headers``: lower-case names
    (Starlette's ``request.headers``); ``keys``: access key -> secret key.

    Accepted when the signature matches, ``expiration <= max_expiration_seconds`` and
    ``timestamp - skew <= now <= timestamp + expiration + skew``. Raises
    :class:`SignatureError`: ``CREDENTIAL_NOT_FOUND`` without a bce-auth-v1 Authorization
    or for an unknown access key, ``EXPIRATION_TOO_LONG`` for a lifetime past the bound,
    ``SIGNATURE_MISMATCH`` otherwise (bad timestamp, outside the window, any signed part
    changed).
    """
    auth = parse_authorization(headers.get("authorization"))
    secret_key = keys.get(auth.access_key)
    if secret_key is None:
        raise SignatureError(SignatureFailure.CREDENTIAL_NOT_FOUND, "unknown access key")

    _check_lifetime(auth, now, max_skew_seconds, max_expiration_seconds)

    route = _strip_prefix(path, mount_prefix)
    presented = auth.signature.strip().lower().encode("ascii", "replace")
    matched = False
    # The SDK signs the route as is; Baidu's documentation signs it URI-encoded.
    for uri in dict.fromkeys((route, encode_except_slash(route))):
        expected = _signature(
            secret_key,
            auth.prefix,
            string_to_sign(method, uri, query, headers, auth.signed_headers),
        )
        matched |= hmac.compare_digest(expected.encode("ascii"), presented)
    if not matched:
        raise SignatureError(SignatureFailure.SIGNATURE_MISMATCH, "signature does not match")
    return auth.access_key
