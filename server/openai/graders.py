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
  score is at least ``pass_threshold``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaldock.engines.text_metrics import similarity

from . import formula

STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
# What evals.create takes as testing criteria, and what graders.run / validate take.
EVAL_GRADERS = ("string_check", "text_similarity", "label_model", "score_model", "python")
API_GRADERS = ("string_check", "text_similarity", "score_model", "python", "multi")
# Graders this version computes; the others are refused with their reason (:func:`check`).
COMPUTED = ("string_check", "text_similarity", "multi")
NOT_YET = {
    "label_model": "label_model graders (through the judge engine) are not served by this "
    "evaldock version; grade with string_check or text_similarity, or grade the labels "
    "yourself and compare them with string_check",
    "score_model": "score_model graders (through the judge engine) are not served by this "
    "evaldock version; use text_similarity, or a multi of string_check/text_similarity",
    "python": "python graders are not served by this evaldock version (they would run your "
    "code as the server's user); use string_check, text_similarity or a multi formula",
}
MAX_NAME = 256
MAX_TEMPLATE = 64 * 1024
MAX_MULTI = 32

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


def check(grader: Any, at: str, allowed: tuple[str, ...], *, evals: bool) -> None:
    """Refuse a grader the service would refuse (or that this version does not compute),
    with the field and its fix. ``evals``: a testing criterion (``cosine`` allowed,
    ``pass_threshold`` required for text_similarity)."""
    if not isinstance(grader, dict):
        raise GraderInvalid(f"{at} must be an object with a type", at)
    kind = grader.get("type")
    if kind not in allowed:
        raise GraderInvalid(f"{at}.type {kind!r} is not one of {', '.join(allowed)}", f"{at}.type")
    name = _need(grader, "name", str, at)
    if not name or len(name) > MAX_NAME:
        raise GraderInvalid(f"{at}.name must have 1 to {MAX_NAME} characters", "name")
    if kind in NOT_YET:
        raise GraderInvalid(f"{at}: {NOT_YET[kind]}", f"{at}.type")
    if kind == "string_check":
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
            check(sub, f"{at}.graders.{key}", inner, evals=False)
        text = _need(grader, "calculate_output", str, at)
        try:
            formula.parse(text, set(graders))
        except formula.FormulaError as exc:
            raise GraderInvalid(f"{at}.calculate_output: {exc}", "calculate_output") from None


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
    return score >= float(threshold if threshold is not None else 1.0)


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
    if grader["type"] == "string_check":
        return f"string_check:{grader['operation']}"
    return str(similarity.signature(grader["evaluation_metric"], wordnet_dir, embedder))
