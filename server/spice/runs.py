"""The pure parts of a run, shared by the backend (API process) and the tasks (workers).

As the runtime runs an eval (crates/runtime/src/model/eval/mod.rs): read ``input`` and
``ideal`` of every case, ask the model for each input (a chat completion; the output is
text, or the choice list when the first ideal is one), score every case with every
scorer, store one ``eval.results`` row per case x scorer and ``<scorer>/mean`` metrics on
the run. Here: the built-in models' answers, the texts ``eval.results`` stores, the f32
form of a metric, a spicepod model's served name, and the run's signature.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaldock.engines.scorers import (
    Choices,
    Output,
    as_output,
    output_of_completion,
    parse_cell,
)
from evaldock.engines.signature import VERSION_KEY, Signature


def f32(value: float) -> float:
    """A float32 as the runtime's JSON shows it: its shortest text (0.6363636)."""
    return float(str(np.float32(value)))


def served_model(name: str, source: str, known: Sequence[str]) -> str:
    """The judge's name for a spicepod model: the component's own name when the judge
    knows it ([judge.models]), else the model part of ``from`` (``openai:gpt-4o-mini``)."""
    if name in known or not source:
        return name
    return source.split(":", 1)[1] if ":" in source else source


def mock_answer(input_cell: Any) -> str:
    """The built-in ``mock`` model: deterministic text that depends on the whole input."""
    text = json.dumps(input_cell, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    last = input_cell if isinstance(input_cell, str) else text
    return f"mock answer {digest}: {last[:200]}"


def completion(text: str) -> list[dict[str, Any]]:
    return [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    ]


def replay_answer(cell: Any, first_ideal: Output) -> Output:
    """The built-in ``replay`` model answers with the case's ``output`` cell, held as the
    runtime holds a model's answer: text, or a choice list when the first ideal is one."""
    if isinstance(first_ideal, Choices):
        value = parse_cell(cell)
        return value if isinstance(value, Choices) else Choices.from_value(completion(value))
    if cell is None or isinstance(cell, str):
        return cell or ""
    value = as_output(cell)  # a list cell: a choice list, of which the text is kept
    return value if isinstance(value, str) else value.text


def builtin_answers(model: str, rows: Sequence[Mapping[str, Any]], first: Output) -> list[Output]:
    """The answers of the built-in model ``mock`` or ``replay`` to every row; raises
    ``InvalidValue`` for a replayed ``output`` cell the runtime could not hold."""
    if model == "replay":
        return [replay_answer(r.get("output"), first) for r in rows]
    return [output_of_completion(completion(mock_answer(r["input"])), first) for r in rows]


def cell_text(value: Any) -> str:
    """A value as eval.results stores it: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def run_signature(
    model: str,
    scorers: Sequence[str],
    *,
    served: str | None = None,
    judged: Mapping[str, str] | None = None,
    judge: str | None = None,
    embedder: str | None = None,
) -> Signature:
    """What produced a run's scores, sacreBLEU-style: the scorers, the model (and the name
    it was served as), the judge scorers' served models, then the signature of each engine
    used (its fields after the first named ``<kind>.<field>``, so the judge's ``model``
    and the embedder's do not collide), evaldock's version last::

        scorers:match,minilm|model:replay|embedder:mock|embedder.model:...|evaldock:0.1.0

    The built-in scorers are evaldock's own code: its version stands for them.
    """
    head: list[tuple[str, object]] = [("scorers", ",".join(scorers)), ("model", model)]
    if served is not None:
        head.append(("served", served))
    if judged:
        head.append(("judged", ",".join(f"{name}={to}" for name, to in judged.items())))
    signature = Signature(head)
    for text in (judge, embedder):
        if text:
            signature = signature.extended(_namespaced(Signature.parse(text)))
    return signature.extended(())  # the version, last, when no engine was used


def _namespaced(engine: Signature) -> list[tuple[str, str]]:
    """``judge:mock|model:lexical|evaldock:x`` -> ``judge:mock|judge.model:lexical``."""
    kind = engine.kind
    first, *rest = engine.fields
    return [first, *((f"{kind}.{k}", v) for k, v in rest if k != VERSION_KEY)]
