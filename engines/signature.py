"""What produced a result, reproducibly: one value type for every engine (sacreBLEU-style).

A signature is an ordered list of ``key:value`` fields joined by ``|``, the first naming
the engine kind and implementation, the last evaldock's version::

    judge:openai|model:SmolLM2-135M-Instruct|prompt:v1|temp:0|max_tokens:128|structured:json_schema|evaldock:0.1.0

:class:`Signature` *is* that text (a ``str`` subclass), so it is stored, logged, compared
and JSON-encoded as the string it always was, and it also reads back as fields
(:attr:`Signature.fields`, :meth:`Signature.get`). :meth:`Signature.parse` inverts
:meth:`Signature.format` exactly. Values may hold ``:`` (``model:hf-hub:org/repo``); a
``|`` or ``\\`` inside a value is escaped with a backslash, so any value round-trips.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Iterable, Iterator
from typing import Any

SEPARATOR = "|"
VERSION_KEY = "evaldock"


@functools.cache
def evaldock_version() -> str:
    """The installed evaldock's version; ``dev`` when running from an uninstalled tree."""
    try:
        return importlib.metadata.version("evaldock")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(SEPARATOR, "\\" + SEPARATOR)


def _split(text: str) -> Iterator[str]:
    """``text`` cut at every unescaped separator, escapes removed."""
    part: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            part.append(next(chars, "\\"))
        elif ch == SEPARATOR:
            yield "".join(part)
            part = []
        else:
            part.append(ch)
    yield "".join(part)


def _check_key(key: str) -> str:
    if not key or ":" in key or SEPARATOR in key or "\\" in key or key != key.strip():
        raise ValueError(f"bad signature key {key!r}: non-empty, without ':', '|', '\\' or edges")
    return key


class Signature(str):
    """Ordered ``key:value`` fields; the instance equals its :meth:`format` text.

    Build one with :meth:`of` (appends evaldock's version) or from pairs; read one back
    with :meth:`parse`.
    """

    _fields: tuple[tuple[str, str], ...]

    def __new__(cls, fields: Iterable[tuple[str, object]]) -> Signature:
        if isinstance(fields, str):
            raise TypeError("Signature(...) takes (key, value) pairs; use Signature.parse(text)")
        pairs = tuple((_check_key(str(k)), _text(v)) for k, v in fields)
        if not pairs:
            raise ValueError("a signature needs at least one field")
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"repeated signature keys in {keys}")
        self = super().__new__(cls, SEPARATOR.join(f"{k}:{_escape(v)}" for k, v in pairs))
        self._fields = pairs
        return self

    @classmethod
    def of(cls, kind: str, name: str, /, **fields: object) -> Signature:
        """``kind:name``, then ``fields`` in order, then ``evaldock:<version>``."""
        return cls([(kind, name), *fields.items(), (VERSION_KEY, evaldock_version())])

    @classmethod
    def parse(cls, text: str) -> Signature:
        """The signature :meth:`format` wrote as ``text`` (ValueError when it is not one)."""
        if isinstance(text, Signature):
            return text
        pairs = []
        for part in _split(str(text)):
            key, found, value = part.partition(":")
            if not found:
                raise ValueError(f"signature field {part!r} has no ':' in {text!r}")
            pairs.append((key, value))
        return cls(pairs)

    # -- reading -----------------------------------------------------------------------
    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return self._fields

    @property
    def kind(self) -> str:
        """The first key (``judge``, ``ranker``, ...)."""
        return self._fields[0][0]

    @property
    def version(self) -> str | None:
        return self.get(VERSION_KEY)

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self._fields:
            if k == key:
                return v
        return default

    def as_dict(self) -> dict[str, str]:
        return dict(self._fields)

    def format(self) -> str:  # type: ignore[override]
        """The plain text (``str``, not a Signature)."""
        return str.__str__(self)

    __str__ = format

    def __repr__(self) -> str:
        return f"Signature({self.format()!r})"

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self._fields,)

    # -- deriving ----------------------------------------------------------------------
    def without(self, *keys: str) -> Signature:
        return Signature((k, v) for k, v in self._fields if k not in keys)

    def extended(self, other: Signature | Iterable[tuple[str, object]]) -> Signature:
        """These fields, then ``other``'s (a Signature or pairs), this evaldock's version
        last (the versions inside either are dropped)."""
        theirs = other.fields if isinstance(other, Signature) else tuple(other)
        pairs = [(k, v) for k, v in (*self.fields, *theirs) if k != VERSION_KEY]
        return Signature([*pairs, (VERSION_KEY, evaldock_version())])
