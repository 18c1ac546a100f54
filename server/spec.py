"""The OpenAPI documents in ``openapi/``: loading and compiling them into operations.

Each ``openapi/<surface>.yaml`` is the source of truth for one vendor surface. Its
top-level ``x-evaldock`` table says how the surface is mounted:

    x-evaldock:
      surface: objective        # the handler package server/<surface>/
      prefix: /objective        # always-available mount point
      claims: [/v1/evaluations] # root paths whose unknown routes this vendor answers
      root: true                # also serve every operation at the root (the default);
                                # false: only under the prefix (OpenAI's /openai/v1/...)

An operation may set ``x-evaldock-route`` when Starlette needs a richer path template
than OpenAPI can say (``{resource:path}`` for a path that spans slashes), and
``x-max-body-bytes`` when its body needs another limit than the server's default for a
body read into memory (``[server] max_json_body_bytes``); see ``Operation.max_body_bytes``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# Methods OpenAPI 3.0 has no key for, written ``x-evaldock-<method>:`` beside the others
# (oxen's client sends QUERY, the HTTP QUERY draft, for a batch of version hashes).
# Tools that read the spec (schemathesis) skip them as extensions.
EXTENSION_METHODS = ("query",)
# Request media types whose bodies stream to a temporary file instead of memory.
STREAMED_MEDIA = frozenset(
    {
        "application/octet-stream",
        "multipart/form-data",
        "application/x-tar",
        "application/gzip",
        "application/zip",
    }
)


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | header
    required: bool
    schema: dict[str, Any]


@dataclass
class Operation:
    surface: str
    operation_id: str
    method: str  # upper case
    path: str  # the OpenAPI template
    route: str  # the Starlette template
    parameters: list[Parameter]
    body_schema: dict[str, Any] | None
    body_required: bool
    body_media: list[str]
    secured: bool
    raw: dict[str, Any] = field(repr=False)
    # The body streams to a temporary file (an upload), instead of being read into memory.
    streamed: bool = False
    # ``x-max-body-bytes``: the largest body this operation takes, where the default for
    # its kind does not fit (None: ``[server] max_json_body_bytes`` for a body read into
    # memory, ``[server] max_body_bytes`` for an upload). Never above the provider's
    # ``max_body_bytes(op)``: see ``pipeline.body_limit``.
    max_body_bytes: int | None = None

    @property
    def catch_all(self) -> bool:
        """A ``{name:path}`` template: routed after every specific one."""
        return ":path}" in self.route


@dataclass
class Spec:
    surface: str
    filename: str
    text: str
    doc: dict[str, Any]
    prefix: str
    claims: list[str]
    operations: list[Operation]
    # Operations also served at their vendor path at the root, not only under ``prefix``.
    root: bool = True

    @property
    def title(self) -> str:
        return str(self.doc.get("info", {}).get("title", self.surface))


def _resolve_pointer(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(doc: dict[str, Any], node: Any, _stack: tuple[str, ...] = ()) -> Any:
    """Inline local ``$ref``s and turn OpenAPI 3.0 ``nullable`` into JSON Schema."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            if ref in _stack:
                raise ValueError(f"recursive $ref {ref} is not supported")
            return deref(doc, _resolve_pointer(doc, ref), (*_stack, ref))
        out = {k: deref(doc, v, _stack) for k, v in node.items()}
        if out.pop("nullable", False) and "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out
    if isinstance(node, list):
        return [deref(doc, v, _stack) for v in node]
    return node


def _compile(surface: str, doc: dict[str, Any]) -> list[Operation]:
    global_security = doc.get("security", [])
    operations = []
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in (*HTTP_METHODS, *EXTENSION_METHODS):
            op = item.get(f"x-evaldock-{method}" if method in EXTENSION_METHODS else method)
            if op is None:
                continue
            params: dict[tuple[str, str], Parameter] = {}
            for p in [*shared, *op.get("parameters", [])]:
                p = deref(doc, p)
                params[(p["in"], p["name"])] = Parameter(
                    p["name"],
                    p["in"],
                    bool(p.get("required", p["in"] == "path")),
                    p.get("schema", {}),
                )
            body = deref(doc, op.get("requestBody")) if op.get("requestBody") else None
            content = (body or {}).get("content", {})
            json_media = content.get("application/json") or {}
            operations.append(
                Operation(
                    surface=surface,
                    operation_id=op["operationId"],
                    method=method.upper(),
                    path=path,
                    route=op.get("x-evaldock-route", item.get("x-evaldock-route", path)),
                    parameters=list(params.values()),
                    body_schema=json_media.get("schema") if json_media else None,
                    body_required=bool((body or {}).get("required", False)),
                    body_media=list(content),
                    secured=bool(op.get("security", global_security)),
                    raw=op,
                    streamed=bool(
                        op.get("x-evaldock-stream")
                        or ("application/json" not in content and set(content) & STREAMED_MEDIA)
                    ),
                    max_body_bytes=_byte_limit(surface, op),
                )
            )
    return operations


def _byte_limit(surface: str, op: dict[str, Any]) -> int | None:
    limit = op.get("x-max-body-bytes")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"spec of {surface}, operation {op.get('operationId')}: x-max-body-bytes must be "
            f"a positive whole number of bytes, not {limit!r}"
        )
    return limit


@functools.cache
def load_spec(filename: str) -> Spec:
    """A spec shipped in ``openapi/``."""
    text = (resources.files("evaldock.openapi") / filename).read_text(encoding="utf-8")
    return parse_spec(text, filename)


@functools.cache
def load_spec_file(path: Path) -> Spec:
    """A spec from a file elsewhere (a surface outside the package, e.g. a test's)."""
    return parse_spec(path.read_text(encoding="utf-8"), path.name)


def parse_spec(text: str, filename: str) -> Spec:
    doc = yaml.safe_load(text)
    ext = doc.get("x-evaldock") or {}
    surface = ext.get("surface") or filename.removesuffix(".yaml")
    return Spec(
        surface=surface,
        filename=filename,
        text=text,
        doc=doc,
        prefix=ext.get("prefix", f"/{surface}"),
        claims=list(ext.get("claims", [])),
        operations=_compile(surface, doc),
        root=bool(ext.get("root", True)),
    )


def spec_files() -> list[str]:
    folder = resources.files("evaldock.openapi")
    return sorted(f.name for f in folder.iterdir() if f.name.endswith(".yaml"))


def load_specs() -> list[Spec]:
    return [load_spec(name) for name in spec_files()]


def json_spec(spec: Spec, server_url: str | None = None) -> dict[str, Any]:
    """The spec as served, with ``servers`` pointing at this server when known (under the
    surface's prefix when it is not served at the root, so a tool reading the spec
    reaches it)."""
    doc = copy.deepcopy(spec.doc)
    if server_url:
        doc["servers"] = [{"url": server_url + ("" if spec.root else spec.prefix)}]
    return doc
