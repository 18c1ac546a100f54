"""Spice's eval values: an answer is a text or a list of chat-completion choices.

Spice (crates/runtime/src/model/eval/dataset.rs) reads a dataset's ``ideal`` column once,
at load, into ``DatasetOutput``; scorers then work on those typed values:

- a string cell that parses as a JSON array of ``ChatChoice`` objects is a choice list
  (``"[]"`` too: an empty one); any other string is the answer text itself, *never*
  re-parsed later;
- a list cell (Arrow ``List<Struct>``, a JSONL array) must be a choice list, or the whole
  eval fails with a parse error (:class:`InvalidValue` here);
- a null cell is the empty text.

The model's output is never parsed from text: Spice asks for a chat completion and keeps
the first choice's content as text, or all choices when the *first* ideal is a choice list
(:func:`output_of_completion`). In this module a Python ``str`` is therefore always a text,
and :class:`Choices` is a choice list; :func:`parse_cell` is the one place text turns into
choices.

What a choice must hold to count as one is async-openai's ``ChatChoice`` as serde reads
it: an object with ``index`` (an integer 0..2^32-1, not 0.0) and ``message``, an object
with a known ``role`` and a ``content`` that is a string, null or absent. Optional fields
are type-checked loosely (object, list, string); unknown fields are ignored, as serde
ignores them. ``input`` cells (for the judge's metadata) are chat-message arrays the same
way (:func:`parse_input`).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, cast

# async-openai's Role and FinishReason, as serde spells them.
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
INPUT_ROLES = ROLES | {"developer"}
U32_MAX = 2**32 - 1
_JSON_SPACE = " \t\n\r"  # what serde_json skips around a value


class InvalidValue(ValueError):
    """A dataset cell Spice would refuse: the eval fails with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"{message}; a list cell must be a list of chat-completion choices "
            '({"index": 0, "message": {"role": "assistant", "content": "..."}}), '
            "or make the cell a string"
        )


@dataclass(frozen=True)
class Message:
    """``ChatCompletionResponseMessage``: the fields serde keeps, for struct equality."""

    role: str
    content: str | None = None
    refusal: str | None = None
    tool_calls: Any = None
    function_call: Any = None
    audio: Any = None


@dataclass(frozen=True)
class Choice:
    index: int
    message: Message
    finish_reason: str | None = None
    logprobs: Any = None

    def to_json(self) -> dict[str, Any]:
        """As serde writes it: ``None`` fields left out (``skip_serializing_if``)."""
        message = {
            k: v
            for k, v in (
                ("content", self.message.content),
                ("refusal", self.message.refusal),
                ("tool_calls", self.message.tool_calls),
                ("role", self.message.role),
                ("function_call", self.message.function_call),
                ("audio", self.message.audio),
            )
            if v is not None
        }
        out: dict[str, Any] = {"index": self.index, "message": message}
        if self.finish_reason is not None:
            out["finish_reason"] = self.finish_reason
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return out


@dataclass(frozen=True)
class Choices:
    """A choice list (``DatasetOutput::Choices``); equality is full struct equality."""

    items: tuple[Choice, ...] = ()

    @property
    def contents(self) -> list[str]:
        """Each choice's content, a missing one as "" (Spice's ``unwrap_or_default``)."""
        return [c.message.content or "" for c in self.items]

    @property
    def text(self) -> str:
        """The first choice's content, or "" (Spice's ``extract_text``)."""
        return (self.items[0].message.content or "") if self.items else ""

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.items]

    @classmethod
    def from_value(cls, value: Any) -> Choices:
        """A parsed JSON array (or a Python list of dicts) as a choice list, strictly."""
        if not isinstance(value, list | tuple):
            raise InvalidValue(f"expected a list of choices, got {type(value).__name__}")
        return cls(tuple(_choice(item, i) for i, item in enumerate(value)))


Output: TypeAlias = str | Choices
# What the batch functions accept per row: a text, a choice list (parsed or as a list of
# dicts), or None (the empty text).
Value: TypeAlias = str | Choices | Sequence[Mapping[str, Any]] | None


def _opt(obj: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    v = obj.get(key)
    if v is not None and not isinstance(v, types):
        raise InvalidValue(f"{where}.{key} has the wrong type ({type(v).__name__})")
    return v


def _choice(item: Any, i: int) -> Choice:
    where = f"choice {i}"
    if not isinstance(item, Mapping):
        raise InvalidValue(f"{where} is a {type(item).__name__}, not an object")
    index = item.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= U32_MAX:
        raise InvalidValue(f"{where} needs an integer index in 0..{U32_MAX}, got {index!r}")
    msg = item.get("message")
    if not isinstance(msg, Mapping):
        raise InvalidValue(f"{where} needs a message object")
    role = msg.get("role")
    if role not in ROLES:
        raise InvalidValue(f"{where}.message.role must be one of {sorted(ROLES)}, got {role!r}")
    finish = item.get("finish_reason")
    if finish is not None and finish not in FINISH_REASONS:
        raise InvalidValue(f"{where}.finish_reason {finish!r} is not one of {FINISH_REASONS}")
    m = f"{where}.message"
    return Choice(
        index=index,
        message=Message(
            role=role,
            content=_opt(msg, "content", str, m),
            refusal=_opt(msg, "refusal", str, m),
            tool_calls=_opt(msg, "tool_calls", list, m),
            function_call=_opt(msg, "function_call", Mapping, m),
            audio=_opt(msg, "audio", Mapping, m),
        ),
        finish_reason=finish,
        logprobs=_opt(item, "logprobs", Mapping, where),
    )


def _looks_like_array(text: str) -> bool:
    return text.lstrip(_JSON_SPACE).startswith("[")


def _strict_json(text: str) -> Any:
    """json.loads as serde_json reads it: no NaN/Infinity, no number overflowing f64."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def finite(literal: str) -> float:
        value = float(literal)
        if value in (float("inf"), float("-inf")):
            raise ValueError("number out of range")
        return value

    return json.loads(text, parse_constant=no_constant, parse_float=finite)


def parse_cell(cell: Any) -> Output:
    """A dataset ``ideal`` cell as Spice loads it (``DatasetOutput::from_raw`` for strings,
    ``try_from_value`` for lists). Raises :class:`InvalidValue` for a list that is not a
    choice list; a *string* that is not one is simply text."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        if not _looks_like_array(cell):
            return cell
        try:
            return Choices.from_value(_strict_json(cell))
        except (ValueError, RecursionError):  # JSON or shape: serde falls back to text
            return cell
    if isinstance(cell, Choices):
        return cell
    return Choices.from_value(cell)


def as_output(value: Value) -> Output:
    """A value already held as Spice holds it: text stays text (never parsed), a list is a
    choice list, None is ""."""
    if isinstance(value, str | Choices):
        return value
    if value is None:
        return ""
    return Choices.from_value(value)


def output_of_completion(choices: Sequence[Mapping[str, Any]], first_ideal: Output) -> Output:
    """The model's answer as Spice keeps it: all choices when the first ideal is a choice
    list, otherwise the first choice's content (or "")."""
    if isinstance(first_ideal, Choices):
        return Choices.from_value(list(choices))
    if not choices:
        return ""
    content = (choices[0].get("message") or {}).get("content")
    return content if isinstance(content, str) else ""


def to_json(value: Output) -> str | list[dict[str, Any]]:
    """How Spice serialises a value into the judge's metadata (untagged: text or list)."""
    return value if isinstance(value, str) else value.to_json()


# -- the input column: text, or an array of chat messages -----------------------------
_MESSAGE_KEYS = ("content", "name", "refusal", "audio", "tool_calls", "function_call")


def _message(item: Any, i: int) -> dict[str, Any]:
    if not isinstance(item, Mapping) or item.get("role") not in INPUT_ROLES:
        raise InvalidValue(f"input message {i} needs a role in {sorted(INPUT_ROLES)}")
    role = item["role"]
    content = item.get("content")
    if role in ("developer", "system", "user", "tool") and not isinstance(content, str | list):
        raise InvalidValue(f"input message {i} ({role}) needs a content")
    if role == "tool" and not isinstance(item.get("tool_call_id"), str):
        raise InvalidValue(f"input message {i} (tool) needs a tool_call_id")
    if role == "function" and not isinstance(item.get("name"), str):
        raise InvalidValue(f"input message {i} (function) needs a name")
    out = {"role": role}
    out.update({k: item[k] for k in (*_MESSAGE_KEYS, "tool_call_id") if item.get(k) is not None})
    return out


def parse_input(cell: Any) -> str | list[dict[str, Any]]:
    """A dataset ``input`` cell as Spice loads it (``DatasetInput``): a string that parses
    as a JSON array of chat messages is that array, any other string is one user message;
    a list must be chat messages."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        if not _looks_like_array(cell):
            return cell
        try:
            parsed = _strict_json(cell)
            if not isinstance(parsed, list):
                return cell
            return [_message(m, i) for i, m in enumerate(parsed)]
        except (ValueError, RecursionError):
            return cell
    if isinstance(cell, list | tuple):
        return [_message(m, i) for i, m in enumerate(cell)]
    raise InvalidValue(f"an input cell must be a string or a list, got {type(cell).__name__}")


# -- a column, parsed once and shared by every scorer ---------------------------------
@dataclass(frozen=True)
class Column:
    """One column of answers (the model's outputs, or the ideals) as :class:`Output`\\ s.

    Build it once per eval with :meth:`of` and hand it to every scorer: ``texts`` (each
    row's text, the first choice's for a choice list) is what ``levenshtein`` and the
    embedding scorers read, ``choice_rows`` says which rows need the slow path.
    """

    values: list[Output]
    texts: list[str]
    choice_rows: frozenset[int] = field(default_factory=frozenset)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def of(cls, values: Column | Iterable[Value]) -> Column:
        if isinstance(values, Column):
            return values
        rows = values if isinstance(values, list) else list(values)
        # All text (the usual case): one C-level pass, no per-row Python (~4 ms/100k).
        if operator.countOf(map(type, rows), str) == len(rows):
            texts = cast(list[str], rows)
            return cls(cast(list[Output], texts), texts)
        parsed = [as_output(v) for v in rows]
        choice_rows = frozenset(i for i, v in enumerate(parsed) if isinstance(v, Choices))
        texts = [v if isinstance(v, str) else v.text for v in parsed]
        return cls(parsed, texts, choice_rows)
