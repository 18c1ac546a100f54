"""OpenAI's graders: their checks, their ``{{ namespace.path }}`` templates and their
scores, as plain functions (the tasks in :mod:`.jobs` call them in worker processes).

Pinned conventions (docs/openai.md says the same):

- templates: ``{{item.x}}``, ``{{ item.x }}``, nested ``{{sample.output_json.a.b}}`` and
  ``{{sample.output_tools[0].function.name}}``; a string renders as it is, any other
  value as compact JSON (``1``, ``1.5``, ``true``, ``{"a":1}``); a variable the row lacks
  is an error of that criterion on that row (scored 0, counted in ``errored``), as the
  Graders API's ``invalid_variable_error`` flag suggests;
- ``string_check``: ``eq``/``ne`` exact and case-sensitive, ``like`` = input contains
  reference, ``ilike`` = contains after ``str.casefold()`` of both; 1 or 0; passes on 1;
- ``text_similarity``: :mod:`evaldock.engines.text_metrics.similarity`; passes when the
  score is at least ``pass_threshold``;
- ``score_model``: the grader's messages rendered with ``item`` and ``sample``, asked of
  the judge engine for OpenAI's ``{"steps", "result"}`` JSON (:mod:`.modelgrade`); the
  result clamped into ``range`` (default ``[0, 1]``), an answer without one scores 0
  (errored); passes when the score is at least ``pass_threshold`` (default: the top of
  ``range``);
- ``label_model``: the same messages plus the labels; the judge answers
  ``{"label": <one of them>}`` (an enum in the schema); scores 1 and passes when that
  label is in ``passing_labels``;
- ``python``: ``grade(sample, item) -> float`` (:mod:`.pygrade`), only with ``[openai]
  python_graders = true``; passes when the score is at least ``pass_threshold``
  (default 1.0); an exception scores 0 (errored, the error in the result).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evaldock.engines.text_metrics import similarity

from . import formula

STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
# What evals.create takes as testing criteria, and what graders.run / validate take.
EVAL_GRADERS = ("string_check", "text_similarity", "label_model", "score_model", "python")
API_GRADERS = ("string_check", "text_similarity", "score_model", "python", "multi")
# Graders the judge engine answers (in the API process), and the one that runs user code.
MODEL_GRADERS = ("score_model", "label_model")
PYTHON_OFF = (
    "python graders are off on this server: they run the grader's source as the server's "
    "own user, so any holder of an API key could run code on this machine. A server whose "
    "keys only trusted people hold can turn them on with [openai] python_graders = true "
    "(or EVALDOCK_OPENAI__PYTHON_GRADERS=true); otherwise grade with string_check, "
    "text_similarity, score_model or a multi formula"
)
MAX_NAME = 256
MAX_TEMPLATE = 64 * 1024
MAX_MULTI = 32
MAX_MESSAGES = 64  # a grader's input messages / a completions run's template
MAX_LABELS = 256
MAX_SOURCE = 256 * 1024  # OpenAI's python grader limit: code under 256 kB
ROLES = ("system", "developer", "user", "assistant")
TEXT_PARTS = ("input_text", "output_text")

_VARIABLE = re.compile(r"\{\{(.*?)\}\}", re.S)
_PATH = re.compile(r"^(item|sample)((?:\.[A-Za-z0-9_\-]+|\[\d+\])*)$")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


class GraderInvalid(ValueError):
    """A grader the service would refuse; ``param`` names the field (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class MissingVariable(LookupError):
    """A template names a variable the row does not have."""


# -- templates ----------------------------------------------------------------------------
def template_paths(text: str) -> list[str]:
    """The variables a template names; GraderInvalid for one outside ``item``/``sample``."""
    out = []
    for m in _VARIABLE.finditer(text):
        path = m.group(1).strip()
        if not _PATH.match(path):
            raise GraderInvalid(
                f"template variable {{{{{path}}}}} is not item.<path> or sample.<path> "
                "(e.g. {{item.answer}}, {{sample.output_text}}, {{sample.output_tools[0].id}})"
            )
        out.append(path)
    return out


def is_path(text: str, namespaces: tuple[str, ...]) -> bool:
    m = _PATH.match(text)
    return m is not None and m.group(1) in namespaces


def lookup(path: str, namespaces: Mapping[str, Any]) -> Any:
    m = _PATH.match(path)
    if m is None:
        raise MissingVariable(path)
    value: Any = namespaces.get(m.group(1))
    if value is None:
        raise MissingVariable(path)
    for step in _STEP.finditer(m.group(2)):
        key, index = step.group(1), step.group(2)
        if key is not None and isinstance(value, dict) and key in value:
            value = value[key]
        elif index is not None and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            raise MissingVariable(path)
    return value


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(text: str, namespaces: Mapping[str, Any]) -> str:
    """``text`` with every ``{{ path }}`` replaced; MissingVariable names the first absent."""
    if "{{" not in text:
        return text
    return _VARIABLE.sub(lambda m: text_of(lookup(m.group(1).strip(), namespaces)), text)


# -- checks ---------------------------------------------------------------------------------
def _need(grader: Mapping[str, Any], key: str, kind: type | tuple[type, ...], at: str) -> Any:
    value = grader.get(key)
    if value is None:
        raise GraderInvalid(f"{at}.{key} is required for a {grader.get('type')} grader", key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise GraderInvalid(f"{at}.{key} has the wrong type", key)
    return value


def _template(grader: Mapping[str, Any], key: str, at: str) -> None:
    text = _need(grader, key, str, at)
    if len(text) > MAX_TEMPLATE:
        raise GraderInvalid(f"{at}.{key} is over {MAX_TEMPLATE} characters", key)
    try:
        template_paths(text)
    except GraderInvalid as exc:
        raise GraderInvalid(f"{at}.{key}: {exc.message}", key) from None


def check(
    grader: Any,
    at: str,
    allowed: tuple[str, ...],
    *,
    evals: bool,
    python: bool = False,
    model: Callable[[str], str | None] | None = None,
) -> None:
    """Refuse a grader the service would refuse (or that this server does not run),
    with the field and its fix. ``evals``: a testing criterion (``cosine`` allowed,
    ``pass_threshold`` required for text_similarity); ``python``: python graders are on;
    ``model(name)``: why the judge cannot answer for that model name (None: it can)."""
    try:
        _check(grader, at, allowed, evals=evals, python=python, model=model)
    except GraderInvalid as exc:
        # Every param answered names the field from the request's root.
        if exc.param is None:
            exc.param = at
        elif not exc.param.startswith(at):
            exc.param = f"{at}.{exc.param}"
        raise


def _check(
    grader: Any,
    at: str,
    allowed: tuple[str, ...],
    *,
    evals: bool,
    python: bool,
    model: Callable[[str], str | None] | None,
) -> None:
    if not isinstance(grader, dict):
        raise GraderInvalid(f"{at} must be an object with a type", at)
    kind = grader.get("type")
    if kind not in allowed:
        raise GraderInvalid(f"{at}.type {kind!r} is not one of {', '.join(allowed)}", f"{at}.type")
    name = _need(grader, "name", str, at)
    if not name or len(name) > MAX_NAME:
        raise GraderInvalid(f"{at}.name must have 1 to {MAX_NAME} characters", "name")
    if kind == "python":
        if not python:
            raise GraderInvalid(f"{at}: {PYTHON_OFF}", f"{at}.type")
        _python_source(grader, at)
    elif kind in MODEL_GRADERS:
        _model_grader(grader, at, model)
    elif kind == "string_check":
        _template(grader, "input", at)
        _template(grader, "reference", at)
        if grader.get("operation") not in STRING_OPERATIONS:
            raise GraderInvalid(
                f"{at}.operation must be one of {', '.join(STRING_OPERATIONS)}", "operation"
            )
    elif kind == "text_similarity":
        _template(grader, "input", at)
        _template(grader, "reference", at)
        metric = grader.get("evaluation_metric")
        metrics = similarity.METRICS if evals else similarity.LIBRARY_METRICS
        if metric not in metrics:
            extra = "" if evals else " (cosine is only available in evals, as at OpenAI)"
            raise GraderInvalid(
                f"{at}.evaluation_metric must be one of {', '.join(metrics)}{extra}",
                "evaluation_metric",
            )
        if evals or "pass_threshold" in grader:
            threshold = _need(grader, "pass_threshold", (int, float), at)
            if threshold != threshold:
                raise GraderInvalid(f"{at}.pass_threshold must be a number", "pass_threshold")
    elif kind == "multi":
        graders = grader.get("graders")
        if isinstance(graders, dict) and isinstance(graders.get("type"), str):
            graders = sub_graders(grader)  # one grader, as the 3.57.0 client types it
        if not isinstance(graders, dict) or not graders:
            raise GraderInvalid(f"{at}.graders must be a map of key -> grader", "graders")
        if len(graders) > MAX_MULTI:
            raise GraderInvalid(f"{at}.graders holds more than {MAX_MULTI} graders", "graders")
        inner = tuple(t for t in (*API_GRADERS, "label_model") if t != "multi")
        for key, sub in graders.items():
            check(sub, f"{at}.graders.{key}", inner, evals=False, python=python, model=model)
        text = _need(grader, "calculate_output", str, at)
        try:
            formula.parse(text, set(graders))
        except formula.FormulaError as exc:
            raise GraderInvalid(f"{at}.calculate_output: {exc}", "calculate_output") from None


def _number(grader: Mapping[str, Any], key: str, at: str) -> float | None:
    value = grader.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise GraderInvalid(f"{at}.{key} must be a number", key)
    if abs(value) > 1e12:
        raise GraderInvalid(f"{at}.{key} must be between -1e12 and 1e12", key)
    return float(value)


def _python_source(grader: Mapping[str, Any], at: str) -> None:
    source = _need(grader, "source", str, at)
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE:
        raise GraderInvalid(
            f"{at}.source is over {MAX_SOURCE // 1024} kB (OpenAI's limit)", "source"
        )
    _number(grader, "pass_threshold", at)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise GraderInvalid(
            f"{at}.source does not parse as Python: {exc}"[:400], "source"
        ) from None
    if not any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "grade"
        for node in tree.body
    ):
        raise GraderInvalid(
            f"{at}.source defines no top-level grade(sample, item) -> float", "source"
        )


def content_text(content: Any, at: str) -> str:
    """A message's text: a string, an ``input_text``/``output_text`` part, or a list of
    them (joined by newlines); images and audio are refused (the judge reads text)."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise GraderInvalid(
                f"{at}.content: only text is served (a string, or input_text/output_text "
                f"parts); {kind or type(part).__name__!s} is not",
                "content",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def check_messages(messages: Any, at: str, namespaces: tuple[str, ...], rel: str) -> None:
    """A template of messages: 1 to MAX_MESSAGES of ``{role, content}``, text only, whose
    variables name only ``namespaces``. ``at`` names it in messages, ``rel`` in params."""
    if not isinstance(messages, list) or not messages:
        raise GraderInvalid(f"{at} must be a non-empty list of {{role, content}} messages", rel)
    if len(messages) > MAX_MESSAGES:
        raise GraderInvalid(f"{at} holds more than {MAX_MESSAGES} messages", rel)
    total = 0
    for i, message in enumerate(messages):
        where, param = f"{at}[{i}]", f"{rel}[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise GraderInvalid(f"{where}.role must be one of {', '.join(ROLES)}", param)
        try:
            text = content_text(message.get("content"), where)
        except GraderInvalid as exc:
            raise GraderInvalid(exc.message, param) from None
        try:
            paths = template_paths(text)
        except GraderInvalid as exc:
            raise GraderInvalid(f"{where}.content: {exc.message}", param) from None
        total += len(text)
        if total > MAX_TEMPLATE:
            raise GraderInvalid(f"{at} holds over {MAX_TEMPLATE} characters of text", rel)
        for path in paths:
            if path.split(".", 1)[0].split("[", 1)[0] not in namespaces:
                raise GraderInvalid(
                    f"{where}.content names {{{{{path}}}}}: only "
                    f"{' and '.join(namespaces)} variables are available here",
                    param,
                )


def render_messages(messages: list[Any], namespaces: Mapping[str, Any]) -> list[dict[str, str]]:
    """The messages with their templates filled (checked by :func:`check_messages`);
    MissingVariable names the first variable the row lacks."""
    return [
        {
            "role": m["role"],
            "content": render(content_text(m.get("content"), "message"), namespaces),
        }
        for m in messages
    ]


def model_range(grader: Mapping[str, Any]) -> tuple[float, float]:
    low, high = grader.get("range") or (0.0, 1.0)
    return float(low), float(high)


def _model_grader(
    grader: Mapping[str, Any], at: str, model: Callable[[str], str | None] | None
) -> None:
    check_messages(grader.get("input"), f"{at}.input", ("item", "sample"), "input")
    name = _need(grader, "model", str, at)
    problem = model(name) if model is not None else None
    if problem is not None:
        raise GraderInvalid(f"{at}.model: {problem}", "model")
    params = grader.get("sampling_params")
    if params is not None and not isinstance(params, dict):
        raise GraderInvalid(f"{at}.sampling_params must be an object", "sampling_params")
    if grader["type"] == "score_model":
        bounds = grader.get("range")
        if bounds is not None and (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or any(isinstance(b, bool) or not isinstance(b, int | float) for b in bounds)
            or not bounds[0] < bounds[1]
        ):
            raise GraderInvalid(f"{at}.range must be [low, high] numbers with low < high", "range")
        _number(grader, "pass_threshold", at)
        return
    labels = grader.get("labels")
    if (
        not isinstance(labels, list)
        or not labels
        or len(labels) > MAX_LABELS
        or any(not isinstance(x, str) or not x or len(x) > MAX_NAME for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise GraderInvalid(
            f"{at}.labels must be 1 to {MAX_LABELS} distinct non-empty strings", "labels"
        )
    passing = grader.get("passing_labels")
    if not isinstance(passing, list) or not passing or any(x not in labels for x in passing):
        raise GraderInvalid(
            f"{at}.passing_labels must be a non-empty list of labels from {at}.labels",
            "passing_labels",
        )


def sub_graders(grader: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The map of a multi grader's graders; one grader (how the 3.57.0 client types the
    field) is a map of one, keyed by its name."""
    graders = grader["graders"]
    if isinstance(graders.get("type"), str):
        return {str(graders.get("name") or "grader"): graders}
    return dict(graders)


# -- scores -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    score: float
    passed: bool
    error: str | None = None


def string_check(text: str, reference: str, operation: str) -> float:
    if operation == "eq":
        return float(text == reference)
    if operation == "ne":
        return float(text != reference)
    if operation == "like":
        return float(reference in text)
    return float(reference.casefold() in text.casefold())


def pair(grader: Mapping[str, Any], namespaces: Mapping[str, Any]) -> tuple[str, str]:
    """(input, reference) of a string_check / text_similarity grader on one row."""
    return render(grader["input"], namespaces), render(grader["reference"], namespaces)


def passed(grader: Mapping[str, Any], score: float) -> bool:
    if grader["type"] == "string_check":
        return score >= 1.0
    threshold = grader.get("pass_threshold")
    if threshold is None:
        threshold = model_range(grader)[1] if grader["type"] == "score_model" else 1.0
    return score >= float(threshold)


def grade(grader: Mapping[str, Any], namespaces: Mapping[str, Any], wordnet_dir: str) -> Outcome:
    """One library-scored grader (string_check, or text_similarity but cosine) on one row."""
    try:
        text, reference = pair(grader, namespaces)
    except MissingVariable as exc:
        return Outcome(0.0, False, f"the row has no {exc.args[0]} (named by a template)")
    if grader["type"] == "string_check":
        score = string_check(text, reference, grader["operation"])
    else:
        score = similarity.scorer(grader["evaluation_metric"], wordnet_dir)(text, reference)
    return Outcome(score, passed(grader, score))


def signature(grader: Mapping[str, Any], wordnet_dir: str, embedder: str = "") -> str:
    """What computed a criterion's scores; ``embedder`` is the embedder's signature for
    cosine, the judge's generation signature for the model graders."""
    if grader["type"] in MODEL_GRADERS:
        return f"{grader['type']}:{embedder}"
    if grader["type"] == "python":
        return "python:grade(sample,item)"
    if grader["type"] == "string_check":
        return f"string_check:{grader['operation']}"
    return str(similarity.signature(grader["evaluation_metric"], wordnet_dir, embedder))
