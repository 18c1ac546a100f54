"""The dashboard's pages and their JSON/CSV companions, served at ``/_evaldock/ui/``.

Server-rendered HTML (jinja2, autoescaped: every vendor string a client sent reaches the
page escaped), one stylesheet and one small script shipped in the package, nothing from
the network. Guarded like the control plane: the control key on a login page, then a
session cookie (server/dashboard/sessions.py); with ``[control] open`` no login.
"""

from __future__ import annotations

import csv
import difflib
import functools
import heapq
import io
import sqlite3
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..jsonio import JSONResponse, encode
from ..readmodel import STATES, CasesQuery, RunDetail, RunRow, RunsQuery, RunsView
from ..readsql import MAX_Q
from . import charts
from .badquery import BadQuery
from .compare import MAX_RUNS, Side, Tally, compare_cases, metric_rows, pick_scorers
from .sessions import COOKIE, LOGIN_COOKIE, Session, Sessions, same

if TYPE_CHECKING:
    from ..control import ControlPlane
    from ..surface import AppContext

ROOT = "/_evaldock/ui"
HERE = Path(__file__).parent
STATIC = {"dashboard.css": "text/css", "live.js": "text/javascript"}
# A login form is a key and a token: anything larger is not one.
MAX_FORM_BYTES = 16 * 1024
PAGE_SIZES = (25, 50, 100, 200)
# difflib's matcher is quadratic in the worst case: past 2,000 characters a side the
# cell is shown without highlighting (50 rows x 2,000 chars render in ~20 ms).
DIFF_LIMIT = 2000
TERMINAL = ("completed", "failed", "cancelled")
# Counts of compared finished runs kept (a few hundred bytes each).
TALLIES = 64
# No script, style or font from anywhere but this server; no inline script; no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


LOGIN_FAILURES = {
    "missing": "Enter the control key (<data dir>/control.key).",
    "wrong": "Wrong key: use the one in <data dir>/control.key or [control] key.",
    "expired": "The form expired: log in again (the dashboard needs cookies).",
    "large": "The form is too large.",
}


@dataclass(frozen=True)
class Surface:
    name: str
    title: str
    prefix: str
    view: RunsView | None


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["number"] = charts.number
    env.filters["duration"] = duration
    env.filters["json"] = lambda v: encode(v).decode()
    return env


def duration(row: RunRow) -> str:
    if not row.started_at or not row.finished_at:
        return ""
    try:
        start = datetime.fromisoformat(row.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(row.finished_at.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, int((end - start).total_seconds()))
    return f"{seconds // 60}m {seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def highlight(ideal: str | None, output: str | None) -> tuple[Markup, Markup]:
    """``(ideal, output)`` escaped, what differs marked: ``<del>`` in the ideal for what
    the output lacks, ``<ins>`` in the output for what it added."""
    a, b = ideal or "", output or ""
    if ideal is None or len(a) > DIFF_LIMIT or len(b) > DIFF_LIMIT:
        return escape(a), escape(b)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            left.append(escape(a[i1:i2]))
            right.append(escape(b[j1:j2]))
            continue
        if i2 > i1:
            left.append(Markup("<del>%s</del>") % a[i1:i2])
        if j2 > j1:
            right.append(Markup("<ins>%s</ins>") % b[j1:j2])
    return Markup("").join(left), Markup("").join(right)


def _cursor(text: str | None, name: str) -> tuple[str, str] | None:
    if not text:
        return None
    created, sep, ident = text.partition("~")
    if not sep or not created or not ident:
        raise BadQuery(f"{name} must be <created_at>~<id> as the page's links give it")
    return created, ident


def _number(params: Any, name: str) -> float | None:
    text = params.get(name)
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise BadQuery(f"{name} must be a number, e.g. {name}=0.5") from None


def _choice(params: Any, name: str, choices: Sequence[str], default: str) -> str:
    value = params.get(name) or default
    if value not in choices:
        raise BadQuery(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def _int(params: Any, name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be from {low} to {high}; got {value}")
    return value


class Dashboard:
    def __init__(self, ctx: AppContext, plane: ControlPlane) -> None:
        self.ctx = ctx
        self.plane = plane
        self.sessions = Sessions()
        self.env = _env()
        self._open_session = Session("open", "open", float("inf"))
        self._tallies: OrderedDict[tuple[tuple[str, str, str], ...], Tally] = OrderedDict()

    # -- wiring ---------------------------------------------------------------------------
    def routes(self, *more: Callable[..., list[BaseRoute]]) -> list[BaseRoute]:
        """The pages, then each of ``more`` (given the guard), then the catch-all."""
        page = self._guarded
        return [
            Route(ROOT, self.to_root, methods=["GET"]),
            Route(ROOT + "/", page(self.overview), methods=["GET"]),
            Route(ROOT + "/login", self.login_form, methods=["GET"]),
            Route(ROOT + "/login", self.login, methods=["POST"]),
            Route(ROOT + "/logout", self.logout, methods=["POST"]),
            Route(ROOT + "/static/{name}", self.static, methods=["GET"]),
            Route(ROOT + "/runs", page(self.runs), methods=["GET"]),
            Route(ROOT + "/runs/{surface}/{run_id}", page(self.run), methods=["GET"]),
            Route(ROOT + "/runs/{surface}/{run_id}/cases.{fmt}", page(self.cases), methods=["GET"]),
            Route(
                ROOT + "/runs/{surface}/{run_id}/progress.json",
                page(self.progress, json=True),
                methods=["GET"],
            ),
            Route(ROOT + "/compare", page(self.compare), methods=["GET"]),
            *(route for extra in more for route in extra(page)),
            Route(ROOT + "/{rest:path}", page(self.not_found)),
        ]

    @property
    def surfaces(self) -> list[Surface]:
        return [
            Surface(
                rt.spec.surface,
                rt.spec.title,
                rt.spec.prefix,
                rt.declaration.views() if rt.declaration.views is not None else None,
            )
            for rt in self.plane.runtimes
        ]

    def _surface(self, name: str) -> Surface:
        for surface in self.surfaces:
            if surface.name == name and surface.view is not None:
                return surface
        raise LookupError(f"no surface {name!r} with runs is served")

    def _session(self, request: Request) -> Session | None:
        if self.plane.open:
            return self._open_session
        return self.sessions.get(request.cookies.get(COOKIE))

    def _guarded(
        self, handler: Callable[[Request, Session], Awaitable[Response]], json: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self._session(request)
            if session is None:
                if json:
                    return self._json({"error": "log in at " + ROOT + "/login"}, 401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                where = ROOT + "/login?" + urllib.parse.urlencode({"next": target})
                return self._secure(RedirectResponse(self._root(request) + where, 303))
            try:
                return await handler(request, session)
            except BadQuery as exc:
                return self._page(request, "error.html", session, status=400, message=str(exc))
            except LookupError as exc:
                return self._page(request, "error.html", session, status=404, message=str(exc))

        return endpoint

    # -- rendering ------------------------------------------------------------------------
    @staticmethod
    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @staticmethod
    def _secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        return response

    async def posted(self, request: Request, session: Session) -> dict[str, str] | None:
        """A state-changing form's fields when its CSRF token is this session's; None
        (the caller answers 403) when it is missing, stale or the form too large."""
        form = await _form(request)
        if form is None or not same(form.get("csrf"), session.csrf):
            return None
        return form

    def stale(self, request: Request, session: Session) -> Response:
        return self._page(
            request,
            "error.html",
            session,
            status=403,
            message="Stale form (its token is not this session's): reload the page and try again.",
        )

    def back(self, request: Request, path: str, flash: str = "") -> Response:
        """Post/redirect/get to a dashboard page, a message for its next render."""
        session = self._session(request)
        if session is not None and flash:
            session.flash = flash
        return self._secure(RedirectResponse(self._root(request) + ROOT + path, 303))

    def _json(self, body: Any, status: int = 200) -> Response:
        return self._secure(JSONResponse(body, status_code=status))

    def _page(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **values: Any,
    ) -> Response:
        base = self._root(request) + ROOT
        flash = ""
        if session is not None and session.flash:
            flash, session.flash = session.flash, ""
        text = self.env.get_template(template).render(
            ui=base, session=session, open=self.plane.open, request=request, flash=flash, **values
        )
        return self._secure(Response(text, status_code=status, media_type="text/html"))

    # -- login ----------------------------------------------------------------------------
    async def to_root(self, request: Request) -> Response:
        return self._secure(RedirectResponse(self._root(request) + ROOT + "/", 308))

    def _next(self, value: str | None) -> str:
        """Where to go after login: a dashboard path only (no open redirect)."""
        if value and value.startswith(ROOT + "/") and "//" not in value and "\\" not in value:
            return value
        return ROOT + "/"

    async def login_form(self, request: Request) -> Response:
        if self.plane.open:
            return self._secure(RedirectResponse(self._root(request) + ROOT + "/", 303))
        token = request.cookies.get(LOGIN_COOKIE) or _token()
        failed = request.query_params.get("failed", "")
        response = self._page(
            request,
            "login.html",
            None,
            csrf=token,
            message=LOGIN_FAILURES.get(failed, ""),
            next=self._next(request.query_params.get("next")),
        )
        response.set_cookie(
            LOGIN_COOKIE, token, path=ROOT, httponly=True, samesite="strict", secure=_https(request)
        )
        return response

    def _refused(self, request: Request, why: str, next_: str) -> Response:
        """Back to the login form, saying why (post/redirect/get: a reload resends nothing)."""
        query = urllib.parse.urlencode({"failed": why, "next": next_})
        return self._secure(RedirectResponse(f"{self._root(request)}{ROOT}/login?{query}", 303))

    async def login(self, request: Request) -> Response:
        if self.plane.open:
            return self._secure(RedirectResponse(self._root(request) + ROOT + "/", 303))
        form = await _form(request)
        if form is None:
            return self._refused(request, "large", ROOT + "/")
        next_ = self._next(form.get("next"))
        if not same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            return self._refused(request, "expired", next_)
        key = (form.get("key") or "").strip()
        if not key:
            return self._refused(request, "missing", next_)
        if not same(key, self.plane.key):
            return self._refused(request, "wrong", next_)
        session = self.sessions.create()
        response = self._secure(RedirectResponse(self._root(request) + next_, 303))
        response.set_cookie(
            COOKIE,
            session.id,
            path=ROOT,
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        response.delete_cookie(LOGIN_COOKIE, path=ROOT)
        return response

    async def logout(self, request: Request) -> Response:
        session = self._session(request)
        form = await _form(request)
        if session is not None and not self.plane.open:
            if form is None or not same(form.get("csrf"), session.csrf):
                return self._page(
                    request, "error.html", session, status=403, message="Stale form: try again."
                )
            self.sessions.end(session.id)
        response = self._secure(RedirectResponse(self._root(request) + ROOT + "/login", 303))
        response.delete_cookie(COOKIE, path=ROOT)
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return self._secure(Response("not found", 404, media_type="text/plain"))
        response = FileResponse(HERE / "static" / name, media_type=STATIC[name])
        response.headers.update({**SECURITY_HEADERS, "cache-control": "max-age=300"})
        return response

    async def not_found(self, request: Request, session: Session) -> Response:
        raise LookupError(f"no dashboard page at {request.url.path}")

    # -- pages ----------------------------------------------------------------------------
    async def overview(self, request: Request, session: Session) -> Response:
        db = self.ctx.db
        base = str(request.base_url).rstrip("/")
        cards = []
        for surface in self.surfaces:
            counts: dict[str, int] = {}
            if surface.view is not None:
                kind = surface.view.job_kind
                rows = await db.fetchall(
                    "SELECT status, COUNT(*) AS n FROM job_view WHERE kind = ? GROUP BY status",
                    (kind,),
                )
                counts = {r["status"]: int(r["n"]) for r in rows}
            cards.append(
                {
                    "surface": surface,
                    "base_url": base,
                    "prefixed": base + surface.prefix,
                    "counts": counts,
                    "runs": surface.view is not None,
                }
            )
        jobs = []
        for view in await self.ctx.runner.views(active_only=True):
            name, statuses = self.plane.kinds.get(view.kind, ("", None))
            vendor = statuses.word(view.status) if statuses is not None else view.status
            jobs.append(
                {
                    "surface": name,
                    "vendor": " / ".join(vendor) if isinstance(vendor, tuple) else str(vendor),
                    "view": view,
                    "held": view.id in self.plane.timing.held,
                    "linked": any(
                        s.view is not None and s.view.job_kind == view.kind for s in self.surfaces
                    ),
                }
            )
        failures = await self._merged(RunsQuery(limit=10, status="failed"), None)
        return self._page(
            request,
            "overview.html",
            session,
            cards=cards,
            jobs=jobs,
            failures=failures[:10],
            states=STATES,
        )

    async def _merged(self, query: RunsQuery, surface: str | None) -> list[RunRow]:
        """The first ``query.limit`` rows of every surface's page, merged in order."""
        pages: list[list[RunRow]] = []
        for s in self.surfaces:
            if s.view is None or (surface and s.name != surface):
                continue
            pages.append(await self.ctx.db.read_off_loop(functools.partial(_runs, s.view, query)))
        merged = heapq.merge(*pages, key=lambda r: r.key, reverse=query.order == "desc")
        return list(merged)[: query.limit]

    async def runs(self, request: Request, session: Session) -> Response:
        q = request.query_params
        names = [s.name for s in self.surfaces if s.view is not None]
        surface = q.get("surface") or None
        if surface is not None and surface not in names:
            raise BadQuery(f"surface must be one of {', '.join(names)}; got {surface!r}")
        status = q.get("status") or None
        if status is not None and status not in STATES:
            raise BadQuery(f"status must be one of {', '.join(STATES)}; got {status!r}")
        order = _choice(q, "order", ("desc", "asc"), "desc")
        limit = _int(q, "per", 50, 1, 500)
        after, before = _cursor(q.get("after"), "after"), _cursor(q.get("before"), "before")
        backwards = before is not None
        flipped = {"desc": "asc", "asc": "desc"}[order] if backwards else order
        query = RunsQuery(
            limit=limit + 1,
            order="asc" if flipped == "asc" else "desc",
            after=before or after,
            status=status,
        )
        rows = await self._merged(query, surface)
        more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        has_next = (more and not backwards) or backwards
        has_prev = (after is not None) or (backwards and more)
        keep = {k: v for k, v in (("surface", surface), ("status", status)) if v}
        if order != "desc":
            keep["order"] = order
        if limit != 50:
            keep["per"] = str(limit)

        def link(**extra: str) -> str:
            return "?" + urllib.parse.urlencode({**keep, **extra})

        return self._page(
            request,
            "runs.html",
            session,
            rows=rows,
            names=names,
            states=STATES,
            surface=surface or "",
            state=status or "",
            order=order,
            per=limit,
            sizes=PAGE_SIZES,
            next=link(after=_key(rows[-1])) if rows and has_next else "",
            prev=link(before=_key(rows[0])) if rows and has_prev else "",
            flip=link(order="asc" if order == "desc" else "desc"),
        )

    def _cases_query(self, request: Request) -> tuple[CasesQuery, int]:
        q = request.query_params
        per = _int(q, "per", 50, 1, 500)
        page = _int(q, "page", 1, 1, 10_000_000)
        low, high = _number(q, "min"), _number(q, "max")
        if low is not None and high is not None and low > high:
            raise BadQuery(f"min ({low}) is above max ({high}): swap them")
        text = (q.get("q") or "").strip()
        if len(text) > MAX_Q:
            raise BadQuery(f"q (the text searched) is at most {MAX_Q} characters")
        query = CasesQuery(
            q=text,
            scorer=q.get("scorer") or "",
            failed_only=q.get("failed") in ("1", "on", "true"),
            min_score=low,
            max_score=high,
            sort=_choice(q, "sort", ("idx", "score"), "idx"),  # type: ignore[arg-type]
            order=_choice(q, "order", ("asc", "desc"), "asc"),  # type: ignore[arg-type]
            offset=(page - 1) * per,
            limit=per,
        )
        return query, page

    async def run(self, request: Request, session: Session) -> Response:
        surface = self._surface(request.path_params["surface"])
        run_id = request.path_params["run_id"]
        view = surface.view
        assert view is not None
        db = self.ctx.db
        detail = await db.read_off_loop(lambda c: view.run(c, run_id))
        if detail is None:
            raise LookupError(f"no {surface.name} run {run_id!r}")
        query, page = self._cases_query(request)
        cases = await db.read_off_loop(lambda c: view.cases(c, run_id, query))
        hists = await db.read_off_loop(lambda c: view.histograms(c, run_id))
        pages = max(1, -(-cases.total // query.limit))
        params = {k: v for k, v in request.query_params.items() if k != "page"}

        def link(**extra: Any) -> str:
            return "?" + urllib.parse.urlencode({**params, **extra})

        rows = [(case, *highlight(case.ideal, case.output)) for case in cases.rows]
        return self._page(
            request,
            "run.html",
            session,
            surface=surface,
            detail=detail,
            row=detail.row,
            live=detail.row.status not in TERMINAL,
            bars=charts.metric_bars(detail.metrics, f"Metrics of run {run_id}"),
            histograms=[(h.scorer, charts.histogram(h.scorer, h.bins)) for h in hists],
            cases=cases,
            rows=rows,
            query=query,
            page=page,
            pages=pages,
            sizes=PAGE_SIZES,
            prev=link(page=page - 1) if page > 1 else "",
            next=link(page=page + 1) if page < pages else "",
            download=urllib.parse.urlencode(dict(request.query_params)),
            sort_link=lambda column: link(
                sort=column,
                order="desc" if query.sort == column and query.order == "asc" else "asc",
                page=1,
            ),
        )

    async def cases(self, request: Request, session: Session) -> Response:
        surface = self._surface(request.path_params["surface"])
        run_id, fmt = request.path_params["run_id"], request.path_params["fmt"]
        if fmt not in ("csv", "json"):
            raise LookupError(f"cases come as cases.csv or cases.json, not cases.{fmt}")
        view = surface.view
        assert view is not None
        query, _ = self._cases_query(request)
        page = await self.ctx.db.read_off_loop(lambda c: view.cases(c, run_id, query))
        records = [
            {
                "index": r.idx,
                "input": r.input,
                "ideal": r.ideal,
                "output": r.output,
                **{f"score:{k}": v for k, v in r.scores.items()},
                "failed": r.failed,
                "detail": r.detail,
            }
            for r in page.rows
        ]
        name = f"{surface.name}-{run_id}-cases.{fmt}"
        headers = {"content-disposition": f'attachment; filename="{_safe(name)}"'}
        if fmt == "json":
            response = JSONResponse({"total": page.total, "cases": records}, headers=headers)
            return self._secure(response)
        out = io.StringIO()
        columns = list(records[0]) if records else ["index", "input", "ideal", "output"]
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for record in records:
            # A cell starting with = + - @ is a formula to a spreadsheet: quote it out.
            writer.writerow({k: _cell(v) for k, v in record.items()})
        return self._secure(
            Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
        )

    async def compare(self, request: Request, session: Session) -> Response:
        q = request.query_params
        picks = [p for p in q.getlist("run") if p]
        if len(picks) < 2:
            raise BadQuery(
                "Compare takes two runs or more: tick them in the runs table, or give "
                "run=<surface>:<id> once per run"
            )
        if len(picks) > MAX_RUNS:
            raise BadQuery(f"Compare takes at most {MAX_RUNS} runs at once; got {len(picks)}")
        per = _int(q, "per", 50, 1, 500)
        page = _int(q, "page", 1, 1, 10_000_000)
        db = self.ctx.db
        found = []
        for pick in picks:
            name, sep, run_id = pick.partition(":")
            if not sep or not run_id:
                raise BadQuery(f"run must be <surface>:<id>, e.g. run=spice:abc; got {pick!r}")
            view = self._surface(name).view
            assert view is not None
            detail = await db.read_off_loop(functools.partial(_detail, view, run_id))
            if detail is None:
                raise LookupError(f"no {name} run {run_id!r}")
            found.append((name, run_id, view, detail))
        details = [d for *_, d in found]
        scorers, note = pick_scorers(details, q.get("scorer") or "")
        sides = [
            Side(name, run_id, view, detail, scorer)
            for (name, run_id, view, detail), scorer in zip(found, scorers, strict=True)
        ]
        offset = (page - 1) * per
        # Finished runs do not change: their counts are kept, so the next page reads only
        # as far as it shows (the first read of two 100,000-case runs is the long one).
        key = tuple((s.surface, s.run_id, s.scorer) for s in sides)
        finished = all(s.detail.row.status in TERMINAL for s in sides)
        known = self._tallies.get(key) if finished else None
        result = await db.read_off_loop(lambda c: compare_cases(c, sides, offset, per, known=known))
        tally = result.tally
        if finished:
            self._tallies[key] = tally
            self._tallies.move_to_end(key)
            while len(self._tallies) > TALLIES:
                self._tallies.popitem(last=False)
        pages = max(1, -(-tally.differing // per))
        labels = [f"{s.surface}:{s.detail.row.name or s.run_id}" for s in sides]
        metrics = metric_rows(details)
        params = [(k, v) for k, v in q.multi_items() if k != "page"]

        def link(page: int) -> str:
            return "?" + urllib.parse.urlencode([*params, ("page", str(page))])

        return self._page(
            request,
            "compare.html",
            session,
            sides=sides,
            labels=labels,
            metrics=metrics,
            bars=charts.compare_bars(
                labels, [(n, vs) for n, vs, _ in metrics], "Metrics of the runs compared"
            ),
            note=note,
            tally=tally,
            rows=result.rows,
            page=page,
            pages=pages,
            per=per,
            sizes=PAGE_SIZES,
            picks=picks,
            common=sorted(set.intersection(*(set(d.scorers) for d in details)))
            if all(d.scorers for d in details)
            else [],
            scorer=sides[0].scorer,
            prev=link(page - 1) if page > 1 else "",
            next=link(page + 1) if page < pages else "",
        )

    async def progress(self, request: Request, session: Session) -> Response:
        surface = self._surface(request.path_params["surface"])
        run_id = request.path_params["run_id"]
        view = surface.view
        assert view is not None
        detail = await self.ctx.db.read_off_loop(lambda c: view.run(c, run_id))
        if detail is None:
            return self._json({"error": f"no {surface.name} run {run_id!r}"}, 404)
        row = detail.row
        return self._json(
            {
                "status": row.status,
                "vendor_status": row.vendor_status,
                "processed": row.processed,
                "total": row.total,
                "done": row.status in TERMINAL,
                "error": row.error,
                "metrics": row.metrics,
            }
        )


def _runs(view: RunsView, query: RunsQuery, conn: sqlite3.Connection) -> list[RunRow]:
    return view.runs(conn, query)


def _detail(view: RunsView, run_id: str, conn: sqlite3.Connection) -> RunDetail | None:
    return view.run(conn, run_id)


def _key(row: RunRow) -> str:
    return f"{row.created_at}~{row.id}"


def _token() -> str:
    import secrets

    return secrets.token_urlsafe(32)


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def _form(request: Request) -> dict[str, str] | None:
    """An urlencoded form of at most MAX_FORM_BYTES (None past it); last value wins."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return dict(pairs)


__all__ = ["ROOT", "Dashboard"]
