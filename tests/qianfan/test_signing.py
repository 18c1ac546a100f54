"""bce-auth-v1 verification against signatures made by the qianfan SDK itself.

The SDK runs in the clients' own environment (``EVALDOCK_CLIENTS_PYTHON`` or
``.venv-clients``): one subprocess sends console calls through ``qianfan.resources`` to a
capture server mounted like ours (base URL ``http://127.0.0.1:PORT/qianfan``) and records
each request as the server received it, and calls ``baidubce``'s signer directly on
inputs with characters that need encoding. Everything else is tampering with those
recordings.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evaldock.server.qianfan.signing import (
    IAM_ERRORS,
    SignatureError,
    SignatureFailure,
    canonical_time,
    parse_authorization,
    sign,
    verify,
)
from tests.conftest import clients_python_path

AK, SK = "ak-evaldock-test", "sk-evaldock-test"
KEYS = {AK: SK, "other-ak": "other-sk"}
MOUNT = "/qianfan"
ROOT = Path(__file__).resolve().parents[2]

SDK_SCRIPT = r"""
import json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

ak, sk, out_path = sys.argv[1:4]
captured = []


class Capture(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        captured.append({
            "method": self.command,
            "path": unquote(url.path),
            "query": parse_qsl(url.query, keep_blank_values=True),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        })
        body = json.dumps({"log_id": "1", "result": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
threading.Thread(target=server.serve_forever, daemon=True).start()
os.environ.update(
    QIANFAN_ACCESS_KEY=ak,
    QIANFAN_SECRET_KEY=sk,
    QIANFAN_CONSOLE_API_BASE_URL=f"http://127.0.0.1:{server.server_port}/qianfan",
)
from baidubce.auth.bce_credentials import BceCredentials
from baidubce.auth.bce_v1_signer import sign
from qianfan.resources import Model
from qianfan.resources.console.eval import Eval
from qianfan.resources.console.utils import call_action

Model.get_evaluation_result("ame-report1")
call_action("/wenxinworkshop/modelrepo/eval/report", "", {"id": "ame-report1"})
Eval.V2.describe_eval_tasks(eval_type="model")
server.shutdown()

direct = []
for case in json.loads(sys.stdin.read()):
    to_sign = case["headers_to_sign"]
    auth = sign(
        BceCredentials(ak, sk),
        case["method"].encode(),
        case["path"].encode(),
        {k.encode(): v for k, v in case["headers"].items()},
        {k.encode(): v for k, v in case["params"].items()},
        timestamp=case["timestamp"],
        expiration_in_seconds=case["expiration"],
        headers_to_sign=None if to_sign is None else [h.encode() for h in to_sign],
    )
    direct.append(auth.decode())
with open(out_path, "w") as f:
    json.dump({"captured": captured, "direct": direct}, f)
"""

SIGNED_AT = datetime(2024, 3, 5, 6, 7, 8, tzinfo=UTC)
DIRECT_CASES: list[dict[str, Any]] = [
    {  # encoding: spaces, slashes, colons, non-ASCII, empty values, an unsigned header
        "method": "POST",
        "path": "/v2/eval",
        "headers": {
            "Host": "localhost:8080",
            "Content-Type": "application/json; charset=utf-8",
            "x-bce-date": canonical_time(SIGNED_AT),
            "x-bce-request-id": " 7e0d/é: x ",
            "X-Custom": "not signed",
            "request-source": "",
        },
        "params": {"Action": "DescribeEvalTasks", "q": "a b/c:d~e*", "名": "值", "empty": ""},
        "timestamp": int(SIGNED_AT.timestamp()),
        "expiration": 1800,
        "headers_to_sign": ["host", "content-type", "x-bce-date", "request-source"],
    },
    {  # no signed-header list: the signer's default set, and "//" in the auth string
        "method": "POST",
        "path": "/wenxinworkshop/modelrepo/eval/detail",
        "headers": {
            "Host": "127.0.0.1:8700",
            "Content-Type": "application/json",
            "Content-Length": "17",
            "x-bce-date": canonical_time(SIGNED_AT),
        },
        "params": {"Action": ""},
        "timestamp": int(SIGNED_AT.timestamp()),
        "expiration": 300,
        "headers_to_sign": None,
    },
    {  # a route that needs encoding, signed raw as the SDK holds it
        "method": "POST",
        "path": "/v2/评估 任务",
        "headers": {"Host": "h", "x-bce-date": canonical_time(SIGNED_AT)},
        "params": {},
        "timestamp": int(SIGNED_AT.timestamp()),
        "expiration": 300,
        "headers_to_sign": ["host", "x-bce-date"],
    },
]


def clients_python() -> str:
    python = clients_python_path()
    if not python:
        pytest.skip("set EVALDOCK_CLIENTS_PYTHON to a Python with qianfan==0.4.12.3")
    return python


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    python = clients_python()
    found = subprocess.run([python, "-c", "import qianfan, baidubce"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"{python} lacks the qianfan SDK: pip install qianfan==0.4.12.3")
    folder = tmp_path_factory.mktemp("qianfan-sdk")
    script, out = folder / "sdk_sign.py", folder / "out.json"
    script.write_text(SDK_SCRIPT)
    proc = subprocess.run(
        [python, str(script), AK, SK, str(out)],
        input=json.dumps(DIRECT_CASES),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    assert len(result["captured"]) == 3
    return result


def received(request: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]], dict[str, str]]:
    query = [(k, v) for k, v in request["query"]]
    return request["method"], request["path"], query, dict(request["headers"])


def signed_at(headers: dict[str, str]) -> datetime:
    return datetime.strptime(headers["x-bce-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def check(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    *,
    now: datetime | None = None,
    keys: dict[str, str] = KEYS,
    mount_prefix: str = MOUNT,
) -> str:
    when = now or signed_at(headers) + timedelta(seconds=1)
    return verify(method, path, query, headers, keys, now=when, mount_prefix=mount_prefix)


def refused(kind: SignatureFailure, *args: Any, **kwargs: Any) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        check(*args, **kwargs)
    assert caught.value.kind is kind, caught.value
    return caught.value


MISMATCH = SignatureFailure.SIGNATURE_MISMATCH
NOT_FOUND = SignatureFailure.CREDENTIAL_NOT_FOUND


def test_sdk_requests_verify(sdk: dict[str, Any]) -> None:
    first, action_empty, v2 = sdk["captured"]
    assert first["path"] == "/qianfan/wenxinworkshop/modelrepo/eval/report"
    assert action_empty["query"] == [["Action", ""]]
    assert v2["query"] == [["Action", "DescribeEvalTasks"]]
    for request in sdk["captured"]:
        auth = parse_authorization(request["headers"]["authorization"])
        # What vendors.md 4(b) says the SDK signs, checked rather than assumed.
        assert set(auth.signed_headers) == {"host", "content-type", "request-source", "x-bce-date"}
        assert auth.expiration == "300"
        assert check(*received(request)) == AK
        # Headers the HTTP library added after signing are not signed ...
        assert {"user-agent", "accept", "accept-encoding", "content-length"} <= set(
            request["headers"]
        )
        # ... nor are other headers added on the way, or an empty x-bce-* one.
        method, path, query, headers = received(request)
        extra = {**headers, "x-forwarded-for": "10.0.0.1", "x-bce-empty": "  "}
        assert check(method, path, query, extra) == AK


def test_tampered_method_path_and_query(sdk: dict[str, Any]) -> None:
    _, action_empty, v2 = sdk["captured"]
    method, path, query, headers = received(action_empty)
    refused(MISMATCH, "PUT", path, query, headers)
    refused(MISMATCH, method, path.replace("report", "detail"), query, headers)
    refused(MISMATCH, method, path, query, headers, mount_prefix="")  # prefix signed? no
    refused(MISMATCH, method, "/other" + path, query, headers)
    refused(MISMATCH, method, path, [], headers)  # the empty Action= is signed too
    refused(MISMATCH, method, path, [("Action", "X")], headers)
    refused(MISMATCH, method, path, [*query, ("id", "1")], headers)

    method, path, query, headers = received(v2)
    refused(MISMATCH, method, path, [("Action", "DescribeEvalTask")], headers)
    refused(MISMATCH, method, path, [("action", "DescribeEvalTasks")], headers)


def test_each_signed_header_is_covered(sdk: dict[str, Any]) -> None:
    method, path, query, headers = received(sdk["captured"][0])
    for name in ("host", "content-type", "request-source", "x-bce-date"):
        changed = {**headers, name: headers[name] + "x"}
        refused(MISMATCH, method, path, query, changed, now=signed_at(headers))
        removed = {k: v for k, v in headers.items() if k != name}
        refused(MISMATCH, method, path, query, removed, now=signed_at(headers))
    # Surrounding whitespace is trimmed before signing, so it is no tamper.
    padded = {**headers, "content-type": f"  {headers['content-type']} "}
    assert check(method, path, query, padded) == AK


def test_added_bce_header_is_a_visible_tamper(sdk: dict[str, Any]) -> None:
    method, path, query, headers = received(sdk["captured"][0])
    refused(MISMATCH, method, path, query, {**headers, "x-bce-security-token": "t"})
    refused(MISMATCH, method, path, query, {**headers, "x-bce-date-2": "2024"})


def test_time_window(sdk: dict[str, Any]) -> None:
    method, path, query, headers = received(sdk["captured"][1])
    ts = signed_at(headers)
    skew, expiration = timedelta(seconds=300), timedelta(seconds=300)
    assert check(method, path, query, headers, now=ts - skew) == AK
    assert check(method, path, query, headers, now=ts + expiration + skew) == AK
    late = refused(
        MISMATCH, method, path, query, headers, now=ts + expiration + skew + timedelta(seconds=1)
    )
    assert "allowed skew" in late.reason
    refused(MISMATCH, method, path, query, headers, now=ts - skew - timedelta(seconds=1))
    # A naive `now` is taken as UTC.
    naive = (ts + timedelta(seconds=5)).replace(tzinfo=None)
    assert check(method, path, query, headers, now=naive) == AK


def test_credentials(sdk: dict[str, Any]) -> None:
    method, path, query, headers = received(sdk["captured"][0])
    no_auth = {k: v for k, v in headers.items() if k != "authorization"}
    refused(NOT_FOUND, method, path, query, no_auth, now=signed_at(headers))
    refused(
        NOT_FOUND, method, path, query, {**no_auth, "authorization": ""}, now=signed_at(headers)
    )
    refused(NOT_FOUND, method, path, query, {**headers, "authorization": "Bearer x"})
    refused(NOT_FOUND, method, path, query, headers, keys={"other-ak": "other-sk"})
    # A known AK with the wrong secret is a signature mismatch, as Baidu answers it.
    refused(MISMATCH, method, path, query, headers, keys={AK: "wrong"})
    parts = headers["authorization"].split("/")
    for index, value in ((2, "2024-03-05 06:07:08"), (3, "-1"), (5, "0" * 64)):
        bad = "/".join([*parts[:index], value, *parts[index + 1 :]])
        refused(MISMATCH, method, path, query, {**headers, "authorization": bad})


def test_iam_answers() -> None:
    not_found = IAM_ERRORS[NOT_FOUND]
    assert (not_found.status, not_found.headers()) == (
        401,
        {
            "X-Bce-Error-Code": "NotFound",
            "X-Bce-Error-Message": "NotFound, cause: Could not find credential.",
        },
    )
    mismatch = IAM_ERRORS[MISMATCH]
    assert (mismatch.status, mismatch.headers()) == (
        403,
        {
            "X-Bce-Error-Code": "SignatureDoesNotMatch",
            "X-Bce-Error-Message": (
                "SignatureDoesNotMatch, cause: Fail to authn user: Signature does not match"
            ),
        },
    )
    assert SignatureError(MISMATCH, "x").iam is mismatch


def test_sign_equals_the_sdk_signer(sdk: dict[str, Any]) -> None:
    for case, expected in zip(DIRECT_CASES, sdk["direct"], strict=True):
        ours = sign(
            case["method"],
            case["path"],
            list(case["params"].items()),
            case["headers"],
            AK,
            SK,
            timestamp=SIGNED_AT,
            expiration_seconds=case["expiration"],
            signed_headers=case["headers_to_sign"] or [],
        )
        assert ours == expected
        headers = {k.lower(): v for k, v in case["headers"].items()}
        headers["authorization"] = expected
        query = list(case["params"].items())
        assert check(case["method"], case["path"], query, headers, mount_prefix="") == AK
    # The documented form (URI-encoded route) verifies too.
    case = DIRECT_CASES[2]
    headers = {k.lower(): v for k, v in case["headers"].items()}
    headers["authorization"] = sign(
        "POST", "/v2/%E8%AF%84%E4%BC%B0%20%E4%BB%BB%E5%8A%A1", [], headers, AK, SK,
        timestamp=SIGNED_AT, signed_headers=["host", "x-bce-date"],
    )  # fmt: skip
    assert check("POST", "/qianfan" + case["path"], [], headers) == AK


def test_sign_round_trip_with_mount_prefix() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {
        "host": "127.0.0.1:8700",
        "content-type": "application/json",
        "x-bce-date": canonical_time(now),
    }
    headers["authorization"] = sign(
        "POST", "/wenxinworkshop/modelrepo/eval/create", [("Action", "")], headers, AK, SK,
        timestamp=now,
    )  # fmt: skip
    assert headers["authorization"].startswith(
        f"bce-auth-v1/{AK}/2025-01-02T03:04:05Z/300/host;content-type;x-bce-date/"
    )
    path = "/qianfan/wenxinworkshop/modelrepo/eval/create"
    assert check("POST", path, [("Action", "")], headers, now=now) == AK
    assert check("POST", path, [("Action", "")], headers, now=now, mount_prefix="/qianfan/") == AK
