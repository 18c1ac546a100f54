"""Names users give resources (evals, files, columns, datasets): printable and not path-like.

A name is shown back in listings, logs, file names and terminals, so characters that
change how the text around them reads are refused with a 400 on every surface rather
than stored: C0/C1 controls and DEL (a NUL truncates the name in C tools, ``\\n`` forges
a log line), bidirectional overrides and isolates (U+202E turns ``a\\u202ecsv.exe`` into
``aexe.vsc`` on screen), line and paragraph separators, and U+FFFD (the mark of a
name already damaged by a bad decode). Path-like names (``.``, ``..``, ``...``, a
backslash, a ``/`` where one name is expected) are refused too: they are not names but
directions. The check is one regular-expression scan, linear in the name.
"""

from __future__ import annotations

import re
import unicodedata

# C0, DEL, C1; ALM and LRM/RLM; LRE..RLO; LRI..PDI; line/paragraph separators; U+FFFD.
_BAD = re.compile(
    "[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufffd]"
)


def _show(char: str) -> str:
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, "a control character")
    return f"U+{ord(char):04X} ({name.lower()})"


_CONTROL_NAMES = {"\x00": "NUL", "\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN"}


def name_problem(name: str, what: str = "name", *, path: bool = False) -> str | None:
    """Why ``name`` cannot be stored, as a sentence with its fix; None when it can.

    ``path=True`` takes a relative path of names joined by ``/`` (an Oxen file path):
    each segment is checked, and empty segments (``a//b``, a leading ``/``) are refused.
    """
    bad = _BAD.search(name)
    if bad is not None:
        return (
            f"{what} {name!r} contains {_show(bad.group())} at position {bad.start()}; "
            "use printable characters without control or direction-override marks"
        )
    if "\\" in name:
        return (
            f"{what} {name!r} contains a backslash; use '/' between folders"
            if path
            else (f"{what} {name!r} contains a backslash; names take no path separators")
        )
    segments = name.split("/") if path else [name]
    if not path and "/" in name:
        return f"{what} {name!r} contains '/'; names take no path separators"
    for segment in segments:
        if segment and segment.strip(".") == "":
            return (
                f"{what} {name!r} has {segment!r} as a name; '.', '..' and other names "
                "of dots only are path directions, not names"
            )
        if path and segment == "" and name:
            return f"{what} {name!r} has an empty folder name; drop the extra '/'"
    return None
