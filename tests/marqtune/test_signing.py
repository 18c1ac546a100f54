"""Signed capability URLs: hostile query values are a 403, never an unhandled exception."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from evaldock.server.errors import ApiError
from evaldock.server.marqtune.signing import UrlSigner

NOW = 1_700_000_000.0
SIGNER = UrlSigner(b"k" * 32)


def signed(purpose: str = "upload", resource: str = "d1") -> tuple[str, str]:
    query = parse_qs(urlsplit(SIGNER.sign("/x", purpose, resource, now=NOW)).query)
    return query["expires"][0], query["signature"][0]


def forbidden(expires: str | None, signature: str | None, **kw: str) -> str:
    with pytest.raises(ApiError) as info:
        SIGNER.verify(kw.get("purpose", "upload"), "d1", expires, signature, now=NOW)
    assert info.value.status == 403
    return str(info.value.message)


def test_valid_url_verifies() -> None:
    expires, signature = signed()
    SIGNER.verify("upload", "d1", expires, signature, now=NOW)


def test_wrong_purpose_or_expired() -> None:
    expires, signature = signed()
    assert "does not match" in forbidden(expires, signature, purpose="logs")
    with pytest.raises(ApiError, match="expired at"):
        SIGNER.verify("upload", "d1", expires, signature, now=NOW + 7200)


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        (None, "ab"),
        ("1", None),
        ("", ""),
        ("²", "ab"),  # isdigit() but not int()-able
        ("١٢٣", "ab"),  # Arabic-Indic digits: int() accepts them, the MAC never used them
        ("9" * 5000, "ab"),  # beyond int()'s 4,300-digit limit
        ("9" * 13, "ab"),
        ("-1", "ab"),
        ("1700003600", "é" * 64),  # compare_digest: TypeError on non-ASCII str
        ("1700003600", "a" * 100_000),
    ],
)
def test_hostile_values_are_forbidden(expires: str | None, signature: str | None) -> None:
    assert "no valid signature" in forbidden(expires, signature)


def test_ascii_signature_of_the_wrong_length_does_not_match() -> None:
    expires, _ = signed()
    assert "does not match" in forbidden(expires, "0" * 63)
