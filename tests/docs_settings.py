"""Every setting of the typed settings classes, for docs/configuration.md.

The classes are the one place a default lives (server/config.py for ``[server]``,
``[jobs]``, ``[control]``; ``server/<vendor>/settings.py`` for a surface's table), so the
reference table is generated from them, comments included:

    .venv/bin/python -m tests.docs_settings    # prints the tables; paste them between
                                               # the markers in docs/configuration.md

tests/test_readme.py checks that the page lists exactly these settings with these
defaults (the descriptions may be edited by hand).
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from dataclasses import dataclass
from typing import Any

import msgspec

from evaldock.server.config import ComputeSettings, ControlSettings, JobsSettings, ServerSettings
from evaldock.server.surface import declarations

# Free-form sub-tables documented by hand (their keys are the user's own names).
FREE_FORM = frozenset({"models", "timing", "resources"})

# Settings other engineers are adding in issue 18, written into the docs as facts: listed
# here until their field lands in the class (then the class's own default is checked).
PENDING: dict[tuple[str, str], tuple[Any, str]] = {}


@dataclass(frozen=True)
class Row:
    table: str
    key: str
    default: Any
    about: str

    @property
    def default_text(self) -> str:
        """The default as TOML would spell it."""
        return json.dumps(self.default, ensure_ascii=False)


def tables() -> list[tuple[str, type[msgspec.Struct]]]:
    core: list[tuple[str, type[msgspec.Struct]]] = [
        ("server", ServerSettings),
        ("jobs", JobsSettings),
        ("control", ControlSettings),
        ("compute", ComputeSettings),
    ]
    return core + [(d.name, d.settings) for d in declarations()]


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment: the ``#`` lines just above it (a field under a ``...and``
    continuation shares the comment group it continues)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    previous = ""
    for node in body.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        above: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        text = " ".join(above)
        if not text:
            text = previous  # a field right under another shares its comment
        found[node.target.id] = text
        previous = text
    return found


def rows() -> list[Row]:
    out: list[Row] = []
    for table, cls in tables():
        defaults = msgspec.to_builtins(cls())
        about = _comments(cls)
        for key, value in defaults.items():
            if key in FREE_FORM:
                continue
            out.append(Row(table, key, value, about.get(key, "")))
        for (ptable, pkey), (value, text) in PENDING.items():
            if ptable == table and pkey not in defaults:
                out.append(Row(table, pkey, value, text))
    return out


def render() -> str:
    parts: list[str] = []
    table = ""
    for row in rows():
        if row.table != table:
            table = row.table
            parts += [
                "",
                f"### `[{table}]`",
                "",
                "| setting | default | what it does |",
                "|---|---|---|",
            ]
        about = row.about.replace("|", "\\|")
        parts.append(f"| `{row.key}` | `{row.default_text}` | {about} |")
    return "\n".join(parts).strip() + "\n"


if __name__ == "__main__":
    print(render())
