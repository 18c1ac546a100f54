"""Which judge serves, from the ``[judge]`` table and the environment.

``EVALDOCK_JUDGE_URLS`` (comma-separated base URLs, each ending in ``/v1``),
``EVALDOCK_JUDGE_MODEL`` and ``EVALDOCK_JUDGE_API_KEY`` cover the common case of one
served model and override the table. In real mode a URL selects the ``openai`` backend and
none selects the embedded ``similarity`` judge; ``impl`` in the table overrides both; mock
mode is always ``mock``. ``[judge.models]`` (vendor model name → served model, or a table
with its own ``urls``/``model``/``api_key``, or ``{backend = "mock"}``) passes through as
the ``models`` option; see :mod:`.routing`. The fleet's settings (``per_url_concurrency``,
``eject_seconds``, ``eject_max_seconds``; see :mod:`.fleet`) are read by
:func:`fleet_options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.fleet import EJECT_MAX_SECONDS, EJECT_SECONDS

ENV = {
    "EVALDOCK_JUDGE_URLS": "urls",
    "EVALDOCK_JUDGE_MODEL": "model",
    "EVALDOCK_JUDGE_API_KEY": "api_key",
}


def split_urls(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [str(u).strip() for u in value or [] if str(u).strip()]


def judge_choice(
    mode: str, table: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """(implementation name, options) for the judge engine."""
    options = {k: v for k, v in table.items() if k != "impl"}
    if "url" in options:
        options.setdefault("urls", options.pop("url"))
    for name, key in ENV.items():
        if environ.get(name):
            options[key] = environ[name]
    options["urls"] = split_urls(options.get("urls"))
    if mode == "mock":
        return "mock", options
    if table.get("impl"):
        return str(table["impl"]), options
    return ("openai" if options["urls"] else "similarity"), options


# [judge] settings of the fleet client (engines/judge/fleet.py) and their defaults:
# 0 requests per server = no limit of its own (the judge's `concurrency` bounds them all);
# a failed server is health-checked after 1 s, doubling to at most 30 s.
FLEET_DEFAULTS: dict[str, int | float] = {
    "per_url_concurrency": 0,
    "eject_seconds": EJECT_SECONDS,
    "eject_max_seconds": EJECT_MAX_SECONDS,
}


def fleet_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :class:`.transport.ChatTransport` that configure its
    fleet, from the judge's options (``[judge]``); absent keys take the defaults."""
    out: dict[str, Any] = {}
    for key, default in FLEET_DEFAULTS.items():
        value = options.get(key, default)
        try:
            out[key] = type(default)(value)
        except (TypeError, ValueError):
            raise EngineUnavailable(
                f"[judge] {key} = {value!r} is not a number", f"set it to e.g. {default}"
            ) from None
    return out
