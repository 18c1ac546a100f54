"""The runtime's JSON functions for ``/v1/sql`` (datafusion-functions-json), as Python
UDFs over Arrow arrays: ``json_get``, ``json_get_str``, ``json_get_int``,
``json_get_float``, ``json_get_bool``, ``json_get_json``, ``json_as_text``,
``json_contains``, ``json_length``.

Semantics follow the crate (``src/common.rs``: ``jiter_json_find``): the path is any
number of steps; a string step is an object key (the first of duplicate keys wins, as a
streaming parser finds it) or, reaching an array, an index if it spells one; an integer
step an array index, negative counting from the end; a null step, a missing key, an
index out of range or a step into a scalar answers null. The value found is read as the
function says, null when it is of another type (``json_get_int`` of ``1.5`` or of a
string); as in the crate, a negative number is no number to ``json_get_int`` /
``json_get_float`` (its first byte is ``-``; both answer null, ``json_as_text`` gives
``-1``), and ``json_get_json`` / ``json_as_text`` answer the value's own text as it is in
the document (its spacing kept). Only what precedes the value is parsed, as the crate
does; a document that is not JSON up to there answers null (``json_contains``: false).

Differences, forced by the Python package (documented in README):
- ``json_get`` answers text (a string's value, the JSON text of other values) where the
  crate answers a union type; casts apply to that text.
- The Python package registers one fixed signature per name: path steps are declared as
  text (an integer step is coerced to its digits, so an integer step reaching an object
  looks up the key of those digits, where the crate answers null), and each call's
  number of arguments is given by renaming the call to a per-arity function
  (:func:`rename_calls`; error messages show the public name again).
- The ``->``, ``->>`` and ``?`` operators cannot be registered from Python: DataFusion
  answers "Operator -> is not yet supported" and nothing is rewritten.

Bounds: a document is parsed by the C scanner of :mod:`json`, which stops past the
interpreter's recursion limit (a ``RecursionError``, read as "not JSON": null), and a
document longer than :data:`MAX_DOCUMENT_CHARS` is refused with an error rather than
parsed (stored cells are at most 16 MiB of text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# Stored cells hold at most 16 MiB of text; a query can build longer ones (repeat()),
# which are refused rather than parsed: 64 Mi characters.
MAX_DOCUMENT_CHARS = 64 * 1024 * 1024
# Steps a path may have: the crate takes any number; each arity is one registered UDF.
MAX_PATH_STEPS = 32
_WS = re.compile(r"[ \t\n\r]*")
_INDEX = re.compile(r"^[+-]?[0-9]+$")


class JsonTooLarge(ValueError):
    """A document longer than :data:`MAX_DOCUMENT_CHARS`."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # jiter refuses NaN and Infinity too


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class _Missing(Exception):
    """The path leads nowhere in this document."""


def _value(doc: str, i: int) -> tuple[Any, int]:
    """The value starting at ``i`` and the index after it."""
    try:
        obj, end = _DECODER.raw_decode(doc, i)
    except (ValueError, RecursionError):
        raise _Missing from None
    return obj, end


def _ws(doc: str, i: int) -> int:
    m = _WS.match(doc, i)
    return m.end() if m else i


def _array_items(doc: str, i: int) -> Iterator[int]:
    """Start indexes of the items of the array opening at ``doc[i]``."""
    i = _ws(doc, i + 1)
    if doc.startswith("]", i):
        return
    while True:
        yield i
        _, i = _value(doc, i)
        i = _ws(doc, i)
        if doc.startswith(",", i):
            i = _ws(doc, i + 1)
            continue
        if doc.startswith("]", i):
            return
        raise _Missing


def _object_members(doc: str, i: int) -> Iterator[tuple[str, int]]:
    """(key, start of its value) of each member of the object opening at ``doc[i]``, in
    document order (duplicate keys too)."""
    i = _ws(doc, i + 1)
    if doc.startswith("}", i):
        return
    while True:
        if not doc.startswith('"', i):
            raise _Missing
        try:
            name, i = _scanstring(doc, i + 1, True)
        except ValueError:
            raise _Missing from None
        i = _ws(doc, i)
        if not doc.startswith(":", i):
            raise _Missing
        i = _ws(doc, i + 1)
        yield name, i
        _, i = _value(doc, i)
        i = _ws(doc, i)
        if doc.startswith(",", i):
            i = _ws(doc, i + 1)
            continue
        if doc.startswith("}", i):
            return
        raise _Missing


def _object_member(doc: str, i: int, key: str) -> int:
    """Start index of the value of the first ``key`` in the object opening at ``doc[i]``."""
    for name, start in _object_members(doc, i):
        if name == key:
            return start
    raise _Missing


def _array_item(doc: str, i: int, step: str) -> int:
    if not _INDEX.match(step):
        raise _Missing
    index = int(step)
    if index < 0:
        index += sum(1 for _ in _array_items(doc, i))
        if index < 0:
            raise _Missing
    for n, start in enumerate(_array_items(doc, i)):
        if n == index:
            return start
    raise _Missing


def find(doc: str, path: Sequence[str | None]) -> tuple[Any, int, int] | None:
    """(value, start, end) of the value at ``path`` in ``doc``, or None."""
    if len(doc) > MAX_DOCUMENT_CHARS:
        raise JsonTooLarge(
            f"a JSON document of {len(doc)} characters; the JSON functions read at most"
            f" {MAX_DOCUMENT_CHARS}"
        )
    try:
        i = _ws(doc, 0)
        for step in path:
            if step is None:
                return None
            head = doc[i : i + 1]
            if head == "{":
                i = _object_member(doc, i, step)
            elif head == "[":
                i = _array_item(doc, i, step)
            else:
                return None
        value, end = _value(doc, i)
    except _Missing:
        return None
    return value, i, end


# -- what each function reads from the value found -----------------------------------------
Found = tuple[Any, int, int]
_I64 = (-(2**63), 2**63 - 1)


def _number(doc: str, found: Found) -> bool:
    value, start, _ = found
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and not doc.startswith("-", start)


def _get_str(doc: str, found: Found) -> Any:
    return found[0] if isinstance(found[0], str) else None


def _get_int(doc: str, found: Found) -> Any:
    value = found[0]
    if _number(doc, found) and isinstance(value, int) and _I64[0] <= value <= _I64[1]:
        return value
    return None


def _get_float(doc: str, found: Found) -> Any:
    return float(found[0]) if _number(doc, found) else None


def _get_bool(doc: str, found: Found) -> Any:
    return found[0] if isinstance(found[0], bool) else None


def _get_json(doc: str, found: Found) -> Any:
    return doc[found[1] : found[2]]


def _as_text(doc: str, found: Found) -> Any:
    value = found[0]
    if value is None:
        return None
    return value if isinstance(value, str) else doc[found[1] : found[2]]


def _length(doc: str, found: Found) -> Any:
    if isinstance(found[0], dict):  # members, duplicate keys counted as the crate does
        return sum(1 for _ in _object_members(doc, found[1]))
    return len(found[0]) if isinstance(found[0], list) else None


# name -> (Arrow return type, reader of the value found, answer when nothing is found)
FUNCTIONS: dict[str, tuple[pa.DataType, Callable[[str, Found], Any], Any]] = {
    "json_get": (pa.string(), _as_text, None),
    "json_get_str": (pa.string(), _get_str, None),
    "json_get_int": (pa.int64(), _get_int, None),
    "json_get_float": (pa.float64(), _get_float, None),
    "json_get_bool": (pa.bool_(), _get_bool, None),
    "json_get_json": (pa.string(), _get_json, None),
    "json_as_text": (pa.string(), _as_text, None),
    "json_contains": (pa.bool_(), lambda doc, found: True, False),
    "json_length": (pa.uint64(), _length, None),
}


def evaluate(name: str, doc: pa.Array, *steps: pa.Array) -> pa.Array:
    """``name`` over one batch: ``doc`` and each path step are arrays of its rows."""
    kind, read, missing = FUNCTIONS[name]
    docs = doc.to_pylist()
    n = len(docs)
    # A literal step (the usual case) is the same on every row: read it once.
    columns = [_constant(s) for s in steps]
    out: list[Any] = []
    for row in range(n):
        text = docs[row]
        if text is None:
            out.append(missing)
            continue
        path = [c if not isinstance(c, list) else c[row] for c in columns]
        found = find(text, path)
        try:
            out.append(missing if found is None else read(text, found))
        except _Missing:  # json_length: the object breaks after the value was found
            out.append(missing)
    return pa.array(out, type=kind)


def _constant(step: pa.Array) -> str | list[str | None] | None:
    if len(step) and step.null_count == 0 and step.type == pa.string():
        first = step[0].as_py()
        # pyarrow compares a whole array with a scalar in C; a literal is n copies of one.
        if pc.all(pc.equal(step, first)).as_py():
            return str(first)
    if step.null_count == len(step):
        return None
    return list(step.to_pylist())


# -- one UDF per name and arity ----------------------------------------------------------
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>[Ee]'(?:[^'\\]|''|\\.)*'?|[XxBbNnRr]?'(?:[^']|'')*'?)
    | (?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<comma>,)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_ARITY = re.compile(r"\b(json_[a-z_]+?)__([0-9]+)\b")


def internal_name(name: str, args: int) -> str:
    """The registered function of ``name`` with ``args`` arguments (the document first)."""
    return f"{name}__{args}"


def public_names(message: str) -> str:
    """An error message with the per-arity names given back their public spelling."""
    return _ARITY.sub(lambda m: m.group(1) if m.group(1) in FUNCTIONS else m.group(0), message)


def rename_calls(sql: str) -> tuple[str, set[tuple[str, int]]]:
    """``sql`` with each call of a JSON function renamed to its per-arity UDF, and the
    (name, arguments) pairs it calls. Names are matched as DataFusion resolves them:
    unquoted in any case, quoted exactly; string literals and comments are left alone."""
    tokens = [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(sql)]
    calls: set[tuple[str, int]] = set()
    out = [text for _, text in tokens]
    for i, (kind, text) in enumerate(tokens):
        if kind == "word":
            name = text.lower()
        elif kind == "quoted" and text.startswith('"') and len(text) >= 2:
            name = text[1:-1].replace('""', '"')
        else:
            continue
        if name not in FUNCTIONS:
            continue
        if i > 0 and tokens[i - 1][1] == ".":
            continue  # a column or table of that name, qualified
        j = i + 1
        while j < len(tokens) and tokens[j][0] in ("space", "comment"):
            j += 1
        if j >= len(tokens) or tokens[j][1] != "(":
            continue
        args = _count_args(tokens, j)
        if args is None or args == 0 or args > MAX_PATH_STEPS + 1:
            continue  # DataFusion answers these with its own message
        calls.add((name, args))
        out[i] = internal_name(name, args)
    return "".join(out), calls


def _count_args(tokens: list[tuple[str, str]], open_at: int) -> int | None:
    """Arguments of the call whose ``(`` is token ``open_at``; None if it never closes."""
    depth = 0
    args = 0
    seen = False
    for kind, _text in tokens[open_at:]:
        if kind == "open":
            depth += 1
            if depth == 1:
                continue
        elif kind == "close":
            depth -= 1
            if depth == 0:
                return args + 1 if seen else 0
        elif kind == "comma" and depth == 1:
            args += 1
            continue
        if kind not in ("space", "comment"):
            seen = True
    return None


def udfs(calls: set[tuple[str, int]]) -> list[Any]:
    """The DataFusion UDFs of ``calls`` (from :func:`rename_calls`)."""
    from datafusion import udf

    made = []
    for name, args in sorted(calls):
        kind = FUNCTIONS[name][0]

        def fn(*arrays: pa.Array, _name: str = name) -> pa.Array:
            return evaluate(_name, *arrays)

        made.append(
            udf(fn, [pa.string()] * args, kind, "immutable", name=internal_name(name, args))
        )
    return made
