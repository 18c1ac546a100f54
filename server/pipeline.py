"""The request pipeline every operation of every surface goes through, step by step.

In this order, so that no unauthenticated byte is buffered and the control plane's
journal and faults plug in once:

1. ``declared_size``  — refuse on Content-Length alone, before reading anything, over the
   operation's limit (``body_limit``);
2. ``authenticate``   — API key, bearer token, bce signature or signed URL, from the
   headers and the URL only (none of the vendors signs the body);
3. hooks ``before``   — the journal records the call, faults may answer instead;
4. ``read_body``      — streamed with its cap; uploads go to a temporary file;
5. ``validate``       — Content-Type, JSON (depth-bounded), parameters and body schema;
6. the handler        — the provider method named by the operationId;
7. render             — errors in the vendor's envelope; hooks ``after`` see the status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from . import validation
from .auth import Authenticator, AuthFailed
from .datadir import private_dir
from .errors import ApiError, VendorErrors
from .spec import Operation, Spec
from .surface import ApiRequest, Provider, SurfaceDeclaration

log = logging.getLogger("evaldock")

# host[:port]: a DNS name or IPv4 address, or a bracketed IPv6 address.
_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
_CHUNK_LOG_CAP = 64 * 1024
_GOOD_HOSTS: set[str] = set()  # Host values already found well formed
# The journal's operation for an answer no operation gave (an unknown path, a method the
# path does not serve, an endpoint the surface does not implement).
UNROUTED = "unrouted"


@dataclass
class Call:
    """One request as the hooks see it (the journal's entry is built from this)."""

    surface: str
    operation_id: str
    request: Request
    started: float = field(default_factory=time.time)
    tenant: str = ""
    body_preview: bytearray = field(default_factory=bytearray)
    body_cap: int = _CHUNK_LOG_CAP
    status: int = 0
    upload: Path | None = None  # a streamed body's temporary file
    body_truncated: bool = False
    request_id: str = ""
    slow_body_seconds: float = 0.0  # set by a slow_body fault

    def record(self, chunk: bytes) -> None:
        room = self.body_cap - len(self.body_preview)
        if room > 0:
            self.body_preview += chunk[:room]
        if len(chunk) > room:
            self.body_truncated = True

    @property
    def elapsed_ms(self) -> float:
        return (time.time() - self.started) * 1000


class RequestHook(Protocol):
    """The control plane's journal, faults and metrics plug in here."""

    async def before(self, call: Call, errors: VendorErrors) -> Response | None:
        """Return a response to answer instead of the handler (a fault), else None."""
        ...

    def after(self, call: Call, response: Response) -> Response | None:
        """See the answer; return a replacement (a slowed body) or None."""
        ...


class _BodyTooLarge(Exception):
    pass


def body_limit(op: Operation, provider: Provider) -> tuple[int, str]:
    """The largest body ``op`` takes, and what sets it: its spec's ``x-max-body-bytes``
    where it declares one; else, for a body read into memory (decoded and validated on
    the event loop), ``[server] max_json_body_bytes``; for an upload (streamed to a file),
    the provider's say. Never above the provider's say: ``[server] max_body_bytes``, or a
    surface's upload setting for its upload operation."""
    ceiling = provider.max_body_bytes(op)
    if op.max_body_bytes is not None and op.max_body_bytes < ceiling:
        return op.max_body_bytes, f"x-max-body-bytes of {op.operation_id} in its OpenAPI spec"
    if op.streamed or op.max_body_bytes is not None:
        return ceiling, "[server] max_body_bytes"
    json_limit = provider.settings.max_json_body_bytes
    if json_limit < ceiling:
        return json_limit, "[server] max_json_body_bytes"
    return ceiling, "[server] max_body_bytes"


def declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or len(declared) > 18 or int(declared) > limit):
        raise _BodyTooLarge


async def _chunks(request: Request, limit: int, call: Call) -> AsyncIterator[bytes]:
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            call.record(chunk)
            yield chunk
    except ClientDisconnect:
        return


async def read_body(request: Request, limit: int, call: Call) -> bytes:
    parts = [chunk async for chunk in _chunks(request, limit, call)]
    return b"".join(parts)


async def read_body_to_file(
    request: Request, limit: int, call: Call, folder: Path
) -> tuple[Path, int]:
    """Stream the body into ``folder/.incoming-*`` (0600); memory stays one chunk."""
    private_dir(folder)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in _chunks(request, limit, call):
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), size


def _has_body(request: Request) -> bool:
    """HTTP/1.1 frames a body by Content-Length or Transfer-Encoding; a GET has neither."""
    headers = request.headers
    return "content-length" in headers or "transfer-encoding" in headers


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def check_content_type(op: Operation, request: Request) -> None:
    """415 only when a Content-Type is present, is not JSON-like for a JSON operation and
    the spec does not list it. Missing Content-Type on a JSON operation parses as JSON
    (some official clients send none); operations without a body ignore it."""
    given = _media(request.headers.get("content-type", ""))
    if not given or not op.body_media:
        return
    if given in op.body_media or (validation.is_json(given) and op.body_schema is not None):
        return
    if any(m.endswith("/*") and given.startswith(m[:-1]) for m in op.body_media):
        return
    raise validation.UnsupportedMedia(given, list(op.body_media))


def public_base(request: Request, prefix: str, public_url: str) -> str:
    """Where the client reached this surface: ``[server] public_url`` when set, else the
    request's Host when it is a well-formed ``host[:port]`` (Docker users reach the
    server through a mapped port, so the Host they used is the right one)."""
    scope = request.scope
    if public_url:
        base = public_url.rstrip("/")
    else:
        host = request.headers.get("host", "")
        if host not in _GOOD_HOSTS:
            if not _HOST.match(host):
                raise validation.RequestInvalid(
                    "Host header is not a well-formed host[:port]; "
                    "or set [server] public_url to the URL clients use"
                )
            if len(_GOOD_HOSTS) < 256:  # the few names clients use, not every probe's
                _GOOD_HOSTS.add(host)
        base = f"{scope.get('scheme', 'http')}://{host}"
    return base + prefix if scope["path"].startswith(prefix + "/") else base


class SurfacePipeline:
    """A provider bound to its spec, authenticator, error envelope and the hooks."""

    def __init__(
        self,
        spec: Spec,
        provider: Provider,
        *,
        hooks: Sequence[RequestHook] = (),
        upload_dir: Path,
        public_url: str = "",
        body_cap: int = _CHUNK_LOG_CAP,
    ) -> None:
        self.body_cap = body_cap
        self.spec = spec
        self.provider = provider
        self.errors: VendorErrors = provider.errors
        self.auth: Authenticator = provider.authenticator()
        self.hooks = list(hooks)
        self.upload_dir = upload_dir
        self.public_url = public_url
        for op in spec.operations:
            validation.prepare(op)

    def render(self, err: ApiError) -> Response:
        return self.errors.render(err)

    def unrouted(self, request: Request, err: ApiError) -> Response:
        """The vendor's 404, 405 or 501 for a request no operation serves, seen by the
        hooks like any other answer: a contract test finds the call its client made to
        an endpoint evaldock lacks in the journal (operation ``unrouted``)."""
        call = Call(self.spec.surface, UNROUTED, request, body_cap=self.body_cap)
        response = self.render(err)
        call.status = response.status_code
        for hook in self.hooks:
            response = hook.after(call, response) or response
        return response

    async def __call__(self, op: Operation, request: Request) -> Response:
        call = Call(self.spec.surface, op.operation_id, request, body_cap=self.body_cap)
        try:
            response = await self._handle(op, request, call)
        except ApiError as err:
            response = self.render(err)
        except Exception:
            log.exception("unhandled error in %s.%s", self.spec.surface, op.operation_id)
            response = self.render(self.errors.internal())
        finally:
            # An upload the handler did not move into place is removed.
            if call.upload is not None:
                with contextlib.suppress(OSError):
                    call.upload.unlink(missing_ok=True)
        call.status = response.status_code
        for hook in self.hooks:
            replaced = hook.after(call, response)
            if replaced is not None:
                response = replaced
        return response

    async def _handle(self, op: Operation, request: Request, call: Call) -> Response:
        limit, setting = body_limit(op, self.provider)
        # 1. size, from the header alone
        try:
            declared_size(request, limit)
        except _BodyTooLarge:
            raise self.errors.body_too_large(limit, setting) from None
        # 2. authentication, from headers and URL alone
        tenant = ""
        if op.secured:
            try:
                tenant = await self.auth.authenticate(request)
            except AuthFailed as exc:
                raise self._auth_error(exc) from None
        else:
            tenant = await self.provider.authorize(op, request) or ""
        call.tenant = tenant
        # 3. journal and faults
        for hook in self.hooks:
            answer = await hook.before(call, self.errors)
            if answer is not None:
                return answer
        try:
            check_content_type(op, request)
            base_url = public_base(request, self.spec.prefix, self.public_url)
        except validation.UnsupportedMedia as exc:
            raise self.errors.unsupported_media_type(exc.given, exc.accepted) from None
        except validation.RequestInvalid as exc:
            raise self.errors.invalid_request(exc.message) from None
        # 4. the body, streamed with its cap
        raw, body_file, size = b"", None, 0
        try:
            if op.streamed:
                body_file, size = await read_body_to_file(request, limit, call, self.upload_dir)
                call.upload = body_file
            elif _has_body(request):
                raw = await read_body(request, limit, call)
                size = len(raw)
        except _BodyTooLarge:
            raise self.errors.body_too_large(limit, setting) from None
        # 5. validation
        try:
            params = validation.parameters(
                op,
                request.path_params,
                {k: request.query_params.getlist(k) for k in request.query_params},
                request.headers,
            )
            body = validation.body(op, raw, _media(request.headers.get("content-type", "")))
        except validation.RequestInvalid as exc:
            raise self.errors.invalid_request(exc.message) from None
        api_request = ApiRequest(
            request=request,
            operation=op,
            path=params["path"],
            query=params["query"],
            headers=params["header"],
            body=body,
            raw_body=raw,
            tenant=tenant,
            base_url=base_url,
            body_file=body_file,
            body_size=size,
        )
        # 6. the handler (reads took their turn at the door: server/readgate.py)
        response: Response = await getattr(self.provider, op.operation_id)(api_request)
        return response

    def _auth_error(self, exc: AuthFailed) -> ApiError:
        return self.errors.auth_failed(exc)


@dataclass
class SurfaceRuntime:
    """One enabled surface: its declaration, spec, provider and pipeline."""

    declaration: SurfaceDeclaration
    spec: Spec
    provider: Provider
    pipeline: SurfacePipeline
