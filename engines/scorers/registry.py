"""Which scorers a spicepod may name, and Spice's metrics over their scores.

A spicepod eval lists scorer names: a built-in (``match``, ``json_match``, ``includes``,
``fuzzy_match``, ``levenshtein``), the name of an ``embeddings:`` component, or the name
of a ``models:`` component (an LLM judge). :class:`Scorers` is that namespace for one
spicepod; a name in none of them is :class:`ScorerUnknown`, which carries the known
names. Built-ins win when a component reuses a built-in name.

Metrics: every scorer reports one, ``"<scorer>/mean"`` (:func:`metrics`), computed as
Spice computes it (scorer/mod.rs ``mean``): the scores as f32, summed left to right in
f32, divided by the count as f32; 0.0 for no cases. So ``match`` over 7 hits in 11 cases
is 0.636363625..., which Spice's JSON shows as ``0.6363636`` (f32's shortest text:
``str(numpy.float32(x))``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from evaldock.engines.embedder.base import Embedder
from evaldock.engines.protocols import Judge
from evaldock.engines.scorers import exact, model
from evaldock.engines.scorers.values import Column, Value

BUILTIN: tuple[str, ...] = exact.NAMES
Kind = Literal["builtin", "embedding", "judge"]


class ScorerUnknown(LookupError):
    """A scorer name that is neither built in nor a component of the spicepod."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        self.hint = (
            f"name a built-in scorer ({', '.join(BUILTIN)}) or an embeddings:/models: "
            "component of the spicepod"
        )
        super().__init__(
            f"scorer '{name}' is not defined (known: {', '.join(self.known)}); {self.hint}"
        )


@dataclass
class Scorers:
    """The scorers one spicepod can use.

    ``embedders``: embeddings component name -> embedder engine. ``judge`` serves every
    name in ``judge_models`` (models component names, passed to ``json_score(model=)``).
    """

    embedders: Mapping[str, Embedder] = field(default_factory=dict)
    judge: Judge | None = None
    judge_models: Collection[str] = ()

    def known(self) -> list[str]:
        return sorted({*BUILTIN, *self.embedders, *(self.judge_models if self.judge else ())})

    def kind(self, name: str) -> Kind:
        if name in BUILTIN:
            return "builtin"
        if name in self.embedders:
            return "embedding"
        if self.judge is not None and name in self.judge_models:
            return "judge"
        raise ScorerUnknown(name, self.known())

    def check(self, names: Iterable[str]) -> None:
        """Raise :class:`ScorerUnknown` for the first name that cannot be scored."""
        for name in names:
            self.kind(name)

    async def score(
        self,
        name: str,
        outputs: Column | Iterable[Value],
        ideals: Column | Iterable[Value],
        inputs: Sequence[Any] | None = None,
    ) -> list[float]:
        """Scores of scorer ``name``, one per case; ``inputs`` (the dataset's input cells)
        are needed by judge scorers only. Built-ins run in a worker thread: 100,000
        fuzzy_match pairs take ~1 s, too long for the event loop."""
        kind = self.kind(name)
        if kind == "builtin":
            return await asyncio.to_thread(exact.score_batch, name, outputs, ideals)
        if kind == "embedding":
            return await model.embedding_scores(self.embedders[name], outputs, ideals)
        assert self.judge is not None
        out = Column.of(outputs)
        cells = list(inputs) if inputs is not None else [""] * len(out)
        return await model.judge_scores(self.judge, name, cells, out, ideals)


def score_batch(
    name: str,
    outputs: Column | Iterable[Value],
    ideals: Column | Iterable[Value],
    levenshtein_max_cells: int = exact.LEVENSHTEIN_MAX_CELLS,
) -> list[float]:
    """A built-in scorer over a batch; :class:`ScorerUnknown` for any other name, and
    :class:`~.exact.PairTooLong` for a ``levenshtein`` pair past ``levenshtein_max_cells``
    (the work bound of one pair's edit distance)."""
    if name not in BUILTIN:
        raise ScorerUnknown(name, BUILTIN)
    return exact.score_batch(name, outputs, ideals, levenshtein_max_cells)


def mean(scores: Sequence[float]) -> float:
    """Spice's mean: f32 scores summed in order in f32, over the count as f32."""
    if not len(scores):
        return 0.0
    total = np.cumsum(np.asarray(scores, dtype=np.float32), dtype=np.float32)[-1]
    return float(total / np.float32(len(scores)))


def metric_name(scorer: str) -> str:
    return f"{scorer}/mean"


def metrics(scores: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``{"<scorer>/mean": mean}`` for each scorer's scores, as ``spice.eval.runs.metrics``."""
    return {metric_name(name): mean(values) for name, values in scores.items()}
