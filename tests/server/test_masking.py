"""Secrets kept out of logs: keys, credential headers, signed-URL signatures."""

from __future__ import annotations

import logging

import pytest

from evaldock.server.masking import (
    AccessLogFilter,
    install_access_log_filter,
    mask_headers,
    mask_key,
    mask_url,
)


@pytest.mark.parametrize(
    ("key", "shown"),
    [("", "****"), ("test", "****"), ("a" * 11, "****"), ("abcdefghijyz", "ab****yz")],
)
def test_mask_key(key: str, shown: str) -> None:
    assert mask_key(key) == shown


def test_mask_headers_masks_whole_credential_values() -> None:
    headers = {
        "Authorization": "Bearer sk-live-0123456789",
        "x-api-key": "short",
        "X-API-Key": "0123456789abcdef",
        "authorization": "bce-auth-v1/AKID/2024-01-01T00:00:00Z/1800//0a1b2c3d",
        "Content-Type": "application/json",
    }
    assert mask_headers(headers) == {
        "Authorization": "Be****89",
        "x-api-key": "****",
        "X-API-Key": "01****ef",
        "authorization": "bc****3d",
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("/datasets/d1/logs", "/datasets/d1/logs"),
        (
            "/datasets/d1/file?expires=1700003600&signature=abc123",
            "/datasets/d1/file?expires=1700003600&signature=****",
        ),
        (
            "http://127.0.0.1:8080/x?Signature=s&X-Amz-Signature=t&sig=u&a=1&page=2#frag",
            "http://127.0.0.1:8080/x?Signature=****&X-Amz-Signature=****&sig=****&a=1&page=2#frag",
        ),
        ("/x?access_token=t&key=k&q=a%20b", "/x?access_token=****&key=****&q=a%20b"),
        ("/x?signature", "/x?signature"),  # no value, nothing to hide
        ("https://user:pw@host/p?x=1", "https://****@host/p?x=1"),
        ("http://[::1/x?signature=s", "http://[::1/x?signature=****"),  # unparseable host
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_access_log_filter_rewrites_the_request_line() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "PUT", "/datasets/d1/file?expires=9&signature=deadbeef", "1.1", 200),
        None,
    )
    assert AccessLogFilter().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "PUT /datasets/d1/file?expires=9&signature=**** HTTP/1.1" 200'
    )


def test_install_access_log_filter_is_idempotent() -> None:
    logger = logging.getLogger("evaldock.test.access")
    install_access_log_filter(logger.name)
    install_access_log_filter(logger.name)
    assert sum(isinstance(f, AccessLogFilter) for f in logger.filters) == 1
    for f in list(logger.filters):
        logger.removeFilter(f)


def test_one_list_masks_control_key_bce_token_and_secret_key_everywhere() -> None:
    headers = {
        "X-Evaldock-Control-Key": "0123456789abcdef0123",
        "X-Bce-Security-Token": "ZjkyZDEyYjgtNjQ0ZS00NzQ3LWI4ZDEtY2E2",
        "Idempotency-Key": "stays-visible",
    }
    assert mask_headers(headers) == {
        "X-Evaldock-Control-Key": "01****23",
        "X-Bce-Security-Token": "Zj****E2",
        "Idempotency-Key": "stays-visible",
    }
    assert mask_url("/oauth/2.0/token?ak=AKID&sk=s3cr3t&x_bce_security_token=t") == (
        "/oauth/2.0/token?ak=AKID&sk=****&x_bce_security_token=****"
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/v1/evals?sk=s3cr3t", "1.1", 200),
        None,
    )
    assert AccessLogFilter().filter(record)
    assert "s3cr3t" not in record.getMessage() and "sk=****" in record.getMessage()
