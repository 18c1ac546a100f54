"""Routes from a surface's spec: one route per (template, method), specific first.

Each method is routed on its own, so a ``{name:path}`` catch-all never swallows another
method on a sibling path (with every template registered for every method, the first
full match won and a sibling ``GET`` answered 405). Every specific template is tried
before every catch-all, whatever their order in the spec, so ``POST …/{id}/cancel``
wins over ``POST …/{branch}/{path:path}``. A path that matches with the wrong method
answers the vendor's 405 (or whatever its envelope says for that); a fully literal
template claims its path for every method, so ``GET /models/train`` is not read as
``GET /models/{modelId}``.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from .pipeline import SurfacePipeline
from .spec import Operation


class RestConvertor(Convertor[str]):
    """The rest of a path, line breaks included: Starlette's ``path`` convertor is ``.*``,
    which stops at a ``%0A``, so ``/api/x%0Ay`` slipped past a surface's fallback to the
    core's bare 404 instead of the vendor's envelope."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("rest", RestConvertor())


class OperationRoute(Route):
    """One operation at one mount path; a method mismatch renders the vendor's 405."""

    def __init__(self, path: str, op: Operation, pipeline: SurfacePipeline) -> None:
        self.operation = op
        self.pipeline = pipeline

        async def endpoint(request: Request) -> Response:
            return await pipeline(op, request)

        super().__init__(path, endpoint, methods=[op.method], name=op.operation_id)
        # Every method some operation serves at this same template (set by the builder).
        self.template_methods: set[str] = set()

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        # A fully literal template names one resource: it claims its path for every
        # method (``GET /models/train`` is the vendor's 405/400 there, not a model id).
        if (
            match is Match.PARTIAL
            and not self.param_convertors
            and scope["method"] not in self.template_methods
        ):
            return Match.FULL, child
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            errors = self.pipeline.errors
            err = errors.method_not_allowed(scope["method"], scope["path"])
            response = self.pipeline.unrouted(Request(scope, receive, send), err)
            await response(scope, receive, send)
            return
        # Straight to the pipeline, which renders every error itself: Starlette's
        # endpoint wrapper (exception handlers, send wrappers) cost ~10 us a request.
        response = await self.pipeline(self.operation, Request(scope, receive, send))
        await response(scope, receive, send)


def operation_routes(pipeline: SurfacePipeline) -> list[OperationRoute]:
    """The surface's operations at their vendor path and again under its prefix, every
    specific template before every catch-all (the sort is stable: spec order otherwise)."""
    ops = sorted(pipeline.spec.operations, key=lambda op: op.catch_all)
    prefix = pipeline.spec.prefix
    routes = [OperationRoute(_dotall(op.route), op, pipeline) for op in ops if pipeline.spec.root]
    routes += [OperationRoute(prefix + _dotall(op.route), op, pipeline) for op in ops]
    return share_templates(routes)


class RouteClash(Exception):
    """Two surfaces serve the same method and path template: one would shadow the other."""


_PARAM = re.compile(r"\{[^}:]*(:[^}]*)?\}")


def check_clashes(routes: list[OperationRoute]) -> None:
    """Refuse two surfaces on one (method, template): Starlette would give every such
    request to whichever was registered first, silently. Parameter names do not count
    (``/v1/evals/{id}`` and ``/v1/evals/{name}`` are one template)."""
    seen: dict[tuple[str, str], str] = {}
    for route in routes:
        template = _PARAM.sub(lambda m: "{" + (m.group(1) or "") + "}", route.path)
        for method in sorted(route.methods or ()):
            surface = route.pipeline.spec.surface
            other = seen.setdefault((method, template), surface)
            if other != surface:
                raise RouteClash(
                    f"surfaces {other!r} and {surface!r} both serve {method} {route.path}; "
                    f"serve one of them only under its prefix (x-evaldock root: false in "
                    f"its spec) or turn one off with [server] surfaces"
                )


def _dotall(template: str) -> str:
    """``{name:path}`` read with line breaks too (see :class:`RestConvertor`)."""
    return template.replace(":path}", ":rest}")


def share_templates(routes: list[OperationRoute]) -> list[OperationRoute]:
    """Tell each route every method served at its template (see ``matches``)."""
    served: dict[str, set[str]] = {}
    for route in routes:
        served.setdefault(route.path, set()).update(route.methods or ())
    for route in routes:
        route.template_methods = served[route.path]
    return routes


def fallback_routes(pipeline: SurfacePipeline, routes: list[OperationRoute]) -> list[BaseRoute]:
    """Unknown paths under the prefix or a claimed root path get this vendor's 404; a
    known path with another method its 405 (the fallbacks match every method, so they
    would otherwise win over the operations' partial matches)."""
    errors = pipeline.errors

    async def not_found(request: Request) -> Response:
        path = request.scope["path"]
        if any(route.path_regex.match(path) for route in routes):
            err = errors.method_not_allowed(request.method, request.url.path)
        else:
            err = errors.route_not_found(request.method, request.url.path)
        return pipeline.unrouted(request, err)

    spec = pipeline.spec
    templates = [spec.prefix + "/{rest:rest}"]
    for claim in spec.claims:
        templates += [claim, claim + "/{rest:rest}"]
    out: list[BaseRoute] = []
    for template in templates:
        route = Route(template, not_found)
        # Every method, QUERY or PROPFIND too, gets the vendor's answer: a list of methods
        # (Starlette makes a function endpoint's None into GET) left the others to
        # Starlette's plain-text 405.
        route.methods = None
        out.append(route)
    return out


def _route_path(scope: Scope) -> str:
    """The path the routes see: behind ``--root-path`` that prefix is not theirs."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RouteIndex(BaseRoute):
    """All routes behind one lookup on the path's first segment.

    Starlette tries every route in order, a regex each: with five surfaces that is about
    200 routes, and a poll of ``/v1/evaluations/{id}`` spent 150 us (of 750 us in the
    app) matching the 85 before it. Here each first segment keeps only the routes that
    can match it, in their original order, so precedence (specific before catch-all,
    partial matches for 405) is exactly Starlette's over the same list.
    """

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = routes
        self._wild: list[BaseRoute] = []  # first segment not literal: tried for any path
        self._by_segment: dict[str, list[BaseRoute]] = {}
        for route in routes:
            segment = self._first_segment(route)
            if segment is None:
                self._wild.append(route)
                for bucket in self._by_segment.values():
                    bucket.append(route)
            else:
                self._by_segment.setdefault(segment, list(self._wild)).append(route)

    @staticmethod
    def _first_segment(route: BaseRoute) -> str | None:
        path = getattr(route, "path", None)
        if not isinstance(path, str) or not path.startswith("/"):
            return None
        segment = path[1:].split("/", 1)[0]
        return None if "{" in segment or not segment else segment

    def candidates(self, path: str) -> list[BaseRoute]:
        return self._by_segment.get(path[1:].split("/", 1)[0], self._wild)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.candidates(_route_path(scope)):
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, "evaldock.route": route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child, "evaldock.route": route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope.pop("evaldock.route")
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)
