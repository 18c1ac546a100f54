"""Which judge serves, from the ``[judge]`` table and the environment.

``EVALDOCK_JUDGE_URLS`` (comma-separated base URLs, each ending in ``/v1``),
``EVALDOCK_JUDGE_MODEL`` and ``EVALDOCK_JUDGE_API_KEY`` cover the common case of one
served model. In real mode a URL selects the ``openai`` backend and none selects the
embedded ``similarity`` judge; ``impl`` in the table overrides both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENV = {
    "EVALDOCK_JUDGE_URLS": "urls",
    "EVALDOCK_JUDGE_MODEL": "model",
    "EVALDOCK_JUDGE_API_KEY": "api_key",
}


def judge_choice(
    mode: str, table: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    options = {k: v for k, v in table.items() if k != "impl"}
    for name, key in ENV.items():
        if environ.get(name):
            options[key] = environ[name]
    if isinstance(options.get("urls"), str):
        options["urls"] = [u.strip() for u in options["urls"].split(",") if u.strip()]
    if mode == "mock":
        return "mock", options
    if "impl" in table:
        return str(table["impl"]), options
    return ("openai" if options.get("urls") else "similarity"), options
