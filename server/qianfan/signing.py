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
``SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match``.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

AUTH_VERSION = "bce-auth-v1"
BCE_PREFIX = "x-bce-"
DEFAULT_EXPIRATION_SECONDS = 300  # qianfan's IAMSignExpirationSeconds default
DEFAULT_SIGNED_HEADERS = ("host", "content-md5", "content-length", "content-type")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_UNRESERVED = frozenset((string.ascii_letters + string.digits + "-_.~").encode())
_ENCODED = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]


class SignatureFailure(StrEnum):
    """Why a request was refused; each maps to one IAM answer (:data:`IAM_ERRORS`)."""

    CREDENTIAL_NOT_FOUND = "credential-not-found"
    SIGNATURE_MISMATCH = "signature-mismatch"


@dataclass(frozen=True, slots=True)
class IamError:
    status: int
    code: str
    message: str

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
    mount_prefix: str = "",
) -> str:
    """Check a request's bce-auth-v1 signature; return its access key.

    ``path``: the decoded request path (Starlette's ``scope["path"]``), mount prefix
    included; ``query``: every parameter as received, empty values and repeats included
    (``request.query_params.multi_items()``); ``headers``: lower-case names
    (Starlette's ``request.headers``); ``keys``: access key -> secret key.

    Accepted when the signature matches and ``timestamp - skew <= now <= timestamp +
    expiration + skew``. Raises :class:`SignatureError`: ``CREDENTIAL_NOT_FOUND`` without
    a bce-auth-v1 Authorization or for an unknown access key, ``SIGNATURE_MISMATCH``
    otherwise (bad timestamp, outside the window, any signed part changed).
    """
    auth = parse_authorization(headers.get("authorization"))
    secret_key = keys.get(auth.access_key)
    if secret_key is None:
        raise SignatureError(SignatureFailure.CREDENTIAL_NOT_FOUND, "unknown access key")

    mismatch = SignatureFailure.SIGNATURE_MISMATCH
    try:
        signed_at = datetime.strptime(auth.timestamp, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(
            mismatch, f"timestamp {auth.timestamp!r} is not {TIME_FORMAT}"
        ) from None
    if not auth.expiration.isascii() or not auth.expiration.isdigit():
        raise SignatureError(mismatch, f"expiration {auth.expiration!r} is not whole seconds")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    skew = timedelta(seconds=max_skew_seconds)
    expires = signed_at + timedelta(seconds=int(auth.expiration))
    if not signed_at - skew <= now <= expires + skew:
        raise SignatureError(
            mismatch,
            f"signed at {auth.timestamp} for {auth.expiration} s; now is "
            f"{canonical_time(now)} (allowed skew {max_skew_seconds} s)",
        )

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
        raise SignatureError(mismatch, "signature does not match")
    return auth.access_key
