"""A run's report: what ``report_url`` opens (a signed link, no API key: a browser sends
none) and what ``GET …/runs/{run_id}/report`` answers behind the key.

The hosted service's ``report_url`` opened its dashboard's page of the run. Here it is
``/openai/v1/evaldock/runs/{run_id}/report?expires=…&signature=…``: ``signature`` is
HMAC-SHA256 with the surface's signing secret (the core ``secrets`` table, so links
survive restarts) over the purpose ``report``, the run id and ``expires`` (Unix seconds,
``[openai] report_url_seconds`` after the call that returned the run). The link opens
that run's report and nothing else; a wrong or expired one is a 403 in OpenAI's envelope
that says to retrieve the run again for a fresh link. ``format`` picks the rendering:
``html`` (default, a small page), ``json``, ``csv`` or ``text`` (one row per output item).

The operator's dashboard shows every run too, at ``/_evaldock/ui/runs/openai/<run_id>``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response

from .. import negotiation
from ..capability import CapabilitySigner, Refusal
from .errors import OpenAIError

PURPOSE = "report"
PATH = "/v1/evaldock/runs/{run_id}/report"
DASHBOARD = "/_evaldock/ui/runs/openai/{run_id}"
FORMATS = {"json": negotiation.JSON, "csv": negotiation.CSV, "text": negotiation.TEXT}
# What a page the browser renders may load: nothing but its own inline style. The link
# carries its signature: no Referer takes it to another site.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def sign(signer: CapabilitySigner, url: str, run_id: str) -> str:
    return signer.sign(url, PURPOSE, run_id)


def refusal(signer: CapabilitySigner, run_id: str, query: Mapping[str, str]) -> OpenAIError | None:
    """None when the link is good for ``run_id``; else the 403 to answer."""
    why = signer.check(PURPOSE, run_id, query.get("expires"), query.get("signature"))
    if why is None:
        return None
    fresh = (
        "retrieve the run again (client.evals.runs.retrieve(run_id, eval_id=...)) for a "
        f"fresh report_url, or open {DASHBOARD.format(run_id='<run_id>')} on the server "
        "(the operator's dashboard)"
    )
    if why is Refusal.EXPIRED:
        message = f"This report URL of run {run_id} has expired: {fresh}."
    else:
        message = (
            f"This report URL is not valid for run {run_id} (its expires or signature "
            f"parameter is missing or altered): {fresh}."
        )
    return OpenAIError(403, message, param="signature", vendor_code="invalid_report_url")


def render(
    fmt: str,
    body: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    links: Mapping[str, str],
) -> Response:
    """The report in ``fmt``: html, json, csv or text."""
    if fmt == "html":
        return Response(
            page(body, rows, columns, links), media_type="text/html; charset=utf-8", headers=HEADERS
        )
    media = FORMATS[fmt]
    return negotiation.respond(media, body, rows=rows, columns=columns, headers=HEADERS)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
.meta{color:#555}.pass{color:#17692f}.fail{color:#a3201a}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{font-size:.85em;word-break:break-all}
nav a{margin-right:1rem}
"""


def page(
    body: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    links: Mapping[str, str],
) -> str:
    """A small, self-contained HTML page (no script, no outside resource)."""
    run = body["run"]
    counts = run.get("result_counts") or {}
    title = html.escape(f"{run.get('name') or run['id']}")
    criteria = _table(
        ["criterion", "passed", "failed", "signature"],
        [
            [c.get("name") or c["testing_criteria"], c["passed"], c["failed"], c.get("signature")]
            for c in body["criteria"]
        ],
    )
    items = _table(columns, [[row.get(c) for c in columns] for row in rows])
    more = (
        "<p class=meta>The first 1,000 output items; the API's output_items list pages "
        "through all of them.</p>"
        if body.get("items_truncated")
        else ""
    )
    nav = "".join(
        f'<a href="{html.escape(url)}">{html.escape(name)}</a>' for name, url in links.items()
    )
    error = (
        f"<p class=fail>{html.escape(str(run['error'].get('message')))}</p>"
        if run.get("error")
        else ""
    )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width">
<title>{title} · evaldock</title><style>{STYLE}</style></head><body>
<h1>{title}</h1>
<p class=meta>Run <code>{html.escape(run["id"])}</code>
of eval <code>{html.escape(run["eval_id"])}</code> · {html.escape(str(run["status"]))}
· model {html.escape(run.get("model") or "none (jsonl)")}</p>
{error}
<p><span class=pass>{counts.get("passed", 0)} passed</span> ·
<span class=fail>{counts.get("failed", 0)} failed</span> · {counts.get("errored", 0)} errored ·
{counts.get("total", 0)} rows</p>
<nav>{nav}</nav>
<h2>Testing criteria</h2>{criteria}
<h2>Output items</h2>{more}{items}
<p class=meta>Served by evaldock in place of OpenAI's dashboard page. The server's operator
also sees this run in evaldock's dashboard, at
<code>{html.escape(DASHBOARD.format(run_id=run["id"]))}</code>.</p>
</body></html>
"""
