"""What judges answer with, and how their use is counted.

Four surfaces ask a language model for something, and each call is a method of
:class:`evaldock.engines.protocols.Judge`:

- ``relevance(query, obj)``: Objective's 0/1/2 relevance judgement;
- ``generate(messages, model=, params=)``: free text for a prompt (Oxen ``text``
  evaluations, Spice's model under evaluation);
- ``score(prompt_template=, variables=, max_score=, dimensions=)``: a grade on a
  configurable scale with named dimensions (Qianfan's ``model`` eval mode);
- ``json_score(messages, metadata, model=)``: the ``.score`` of a JSON reply (Spice's
  judge scorers);
- ``structured(messages, schema, model=)``: a JSON object under a caller's JSON schema
  (OpenAI's ``score_model`` ``{result, steps}`` and ``label_model`` ``{label}``).

Token counts and failures are counted on ``judge.usage`` (the whole process) and on every
:func:`usage_scope` open in the calling task, so a job reads its own numbers.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Re-exported until server/objective imports it from evaldock.engines.protocols.

# Objective's scale: 0 irrelevant, 1 partially relevant, 2 perfectly relevant.
LABELS: dict[int, str] = {0: "BAD", 1: "OK", 2: "GREAT"}

# What to fill in when a request needs a generator model and none is served.
GENERATOR_HINT = (
    "set EVALDOCK_JUDGE_URLS (comma-separated OpenAI-compatible base URLs ending in /v1, "
    "e.g. http://127.0.0.1:8000/v1) and EVALDOCK_JUDGE_MODEL, or [judge] urls/model in the "
    "TOML file; per vendor model name, [judge.models]"
)


@dataclass(frozen=True)
class Relevance:
    score: int
    label: str
    explanation: str

    @classmethod
    def of(cls, score: int, explanation: str) -> Relevance:
        return cls(score, LABELS[score], explanation)


@dataclass(frozen=True)
class Generation:
    """Free text for a prompt; ``choices`` holds every sampled answer (``n`` > 1).

    ``finish_reason`` is the first choice's, as the served model gave it: ``stop`` (it
    ended), ``length`` (the token limit cut it), ``content_filter``, ``tool_calls``."""

    text: str
    choices: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Structured:
    """A JSON object answered under a caller's JSON schema (validated against it), the
    tokens it cost, the served model and why it ended."""

    value: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Score:
    """A grade on a min..max scale; ``value`` None when the judge could not score.

    Qianfan counts an unscorable answer in its ``-1`` bucket: that is :attr:`bucket`.
    """

    value: int | None
    per_dimension: dict[str, int] | None = None
    explanation: str = ""

    @property
    def bucket(self) -> int:
        return -1 if self.value is None else self.value


class UnknownModel(LookupError):
    """A vendor model name that no backend serves; surfaces answer in their own shape."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        self.hint = f'map it in the TOML file: [judge.models] "{name}" = "<served model>"'
        super().__init__(
            f"model '{name}' is not served here (known: {', '.join(known) or 'none'}); " + self.hint
        )


@dataclass
class Usage:
    """Counters of model use; prompt and completion tokens are kept apart (Oxen reports
    both)."""

    requests: int = 0  # HTTP requests sent, retries included
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # transport retries (429, 5xx, timeouts, connection errors)
    invalid_outputs: int = 0  # answers that failed parsing or validation, then re-asked
    errors: int = 0  # calls that ended in an error (or an unscorable Score)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# The usage scopes open in the current task; tasks started inside a scope inherit it.
_SCOPES: contextvars.ContextVar[tuple[Usage, ...]] = contextvars.ContextVar(
    "evaldock_judge_usage", default=()
)


@contextlib.contextmanager
def usage_scope() -> Iterator[Usage]:
    """Count the model use of everything awaited (or spawned as tasks) inside the block::

    with usage_scope() as usage:
        await run_the_job(judge)
    tokens = usage.prompt_tokens, usage.completion_tokens
    """
    usage = Usage()
    token = _SCOPES.set((*_SCOPES.get(), usage))
    try:
        yield usage
    finally:
        _SCOPES.reset(token)


def count(total: Usage, **deltas: int) -> None:
    """Add ``deltas`` to the judge's ``total`` and to every open :func:`usage_scope`."""
    for usage in (total, *_SCOPES.get()):
        for key, delta in deltas.items():
            setattr(usage, key, getattr(usage, key) + delta)


def object_text(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten an object into (field path, text) pairs, in order, for judges to read."""
    if isinstance(obj, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in obj.items():
            out.extend(object_text(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, list):
        out = []
        for i, value in enumerate(obj):
            out.extend(object_text(value, f"{prefix}[{i}]"))
        return out
    if obj is None:
        return []
    return [(prefix or "value", str(obj))]


__all__ = [
    "GENERATOR_HINT",
    "LABELS",
    "Generation",
    "Relevance",
    "Score",
    "Structured",
    "UnknownModel",
    "Usage",
    "count",
    "dimension_names",
    "object_text",
    "usage_scope",
]


def dimension_names(dimensions: list[Mapping[str, str]] | None) -> list[str]:
    """Qianfan's ``evaluationDimension`` entries ({dimension, description}) by name."""
    return [str(d["dimension"]) for d in dimensions or []]
