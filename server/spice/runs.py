"""Running an eval: the job behind ``POST /v1/evals/{name}``.

As the runtime does (crates/runtime/src/model/eval/mod.rs): read ``input`` and ``ideal``
of every case, ask the model for each input (a chat completion; the output is text, or
the choice list when the first ideal is one), score every case with every scorer, store
one ``eval.results`` row per case x scorer and ``<scorer>/mean`` metrics on the run.

A run cut off by a restart is redone from the start when its job is resumed (model
answers of judge-routed models come back from the judge's cache, mock and replay cost
nothing). A model or scorer that fails ends the run ``Failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaldock.engines.errors import EngineError
from evaldock.engines.scorers import (
    BUILTIN,
    Choices,
    Column,
    InvalidValue,
    Output,
    as_output,
    metrics,
    output_of_completion,
    parse_cell,
    parse_input,
    score_batch,
)
from evaldock.engines.scorers.model import embedding_scores, judge_scores
from evaldock.engines.scorers.values import to_json

from .. import jsonio
from ..jobs import BlockingContext, Job, JobFailed
from .spicepod import Spicepod, SpicepodError, check_rows, read_rows
from .store import SpiceStore, result_rows

# Cases between cancellation checks while scoring built-ins in the worker thread.
_CHECK_EVERY = 5000


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


def _completion(text: str) -> list[dict[str, Any]]:
    return [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    ]


def replay_answer(cell: Any, first_ideal: Output) -> Output:
    """The built-in ``replay`` model answers with the case's ``output`` cell, held as the
    runtime holds a model's answer: text, or a choice list when the first ideal is one."""
    if isinstance(first_ideal, Choices):
        value = parse_cell(cell)
        return value if isinstance(value, Choices) else Choices.from_value(_completion(value))
    if cell is None or isinstance(cell, str):
        return cell or ""
    value = as_output(cell)  # a list cell: a choice list, of which the text is kept
    return value if isinstance(value, str) else value.text


def cell_text(value: Any) -> str:
    """A value as eval.results stores it: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class EvalRunner:
    """Runs one eval job; the provider builds it with the surface's engines and pod."""

    store: SpiceStore
    pod: Spicepod
    judge: Any
    embedder: Any
    concurrency: int
    max_cases: int

    async def __call__(self, job: Job) -> None:
        run = await self.store.run(job.id)
        if run is None:  # deleted by a reset while queued
            return
        spec = run.spec
        try:
            rows = await self._rows(job, spec)
            inputs = [r["input"] for r in rows]
            ideals = [parse_cell(r["ideal"]) for r in rows]
        except (SpicepodError, InvalidValue) as exc:
            raise JobFailed(f"dataset '{spec['dataset']}': {exc}") from None
        await job.progress(0, len(rows))
        outputs = await self._answers(spec["model"], rows, ideals)
        scores = await self._scores(job, spec, inputs, outputs, ideals)
        out_text = [cell_text(to_json(o)) for o in outputs]
        ideal_text = [cell_text(to_json(i)) for i in ideals]
        input_text = [cell_text(i) for i in inputs]
        table = result_rows(
            job.id, run.tenant, input_text, out_text, ideal_text, list(scores.items())
        )
        means = {k: f32(v) for k, v in metrics(scores).items()}
        async with self.store.db.transaction() as tx:
            await self.store.finish_run(tx, job.id, table, means)
            await job.progress(len(rows), len(rows), conn=tx)

    async def _rows(self, job: Job, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
        source = spec["source"]
        if "error" in source:
            raise SpicepodError(source["error"])
        if "file" in source:
            path = Path(source["file"])
            return await job.run_blocking(lambda ctx: read_rows(path, self.max_cases))
        stored = await self.store.dataset(source["tenant"], spec["dataset"])
        if stored is None or stored[0] is None:
            raise SpicepodError("its uploaded cases are gone (the eval spec was replaced)")
        raw = stored[0]
        return await job.run_blocking(
            lambda ctx: check_rows(jsonio.decode(raw), spec["dataset"], self.max_cases)
        )

    # -- the model ----------------------------------------------------------------------
    async def _answers(
        self, model: str, rows: Sequence[Mapping[str, Any]], ideals: Sequence[Output]
    ) -> list[Output]:
        first: Output = ideals[0] if ideals else ""
        if model == "replay":
            try:
                return [replay_answer(r.get("output"), first) for r in rows]
            except InvalidValue as exc:
                raise JobFailed(f"model 'replay': an output cell is not usable: {exc}") from None
        if model == "mock":
            texts = [mock_answer(r["input"]) for r in rows]
            return [output_of_completion(_completion(t), first) for t in texts]
        component = self.pod.models[model]
        served = served_model(model, component.source, self.judge.known_models())
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def one(i: int, cell: Any) -> Output:
            value = parse_input(cell)
            messages = [{"role": "user", "content": value}] if isinstance(value, str) else value
            async with gate:
                generation = await self.judge.generate(messages, model=served)
            return output_of_completion(_completion(generation.text), first)

        tasks = [asyncio.create_task(one(i, r["input"])) for i, r in enumerate(rows)]
        try:
            return list(await asyncio.gather(*tasks))
        except (EngineError, LookupError, InvalidValue) as exc:
            raise JobFailed(f"model '{model}' (served as '{served}') failed: {exc}") from None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the scorers --------------------------------------------------------------------
    async def _scores(
        self,
        job: Job,
        spec: Mapping[str, Any],
        inputs: Sequence[Any],
        outputs: Sequence[Output],
        ideals: Sequence[Output],
    ) -> dict[str, list[float]]:
        out_col, ideal_col = Column.of(list(outputs)), Column.of(list(ideals))
        scores: dict[str, list[float]] = {}
        for name in spec["scorers"]:
            try:
                if name in BUILTIN:
                    scores[name] = await job.run_blocking(
                        functools.partial(_builtin, name=name, out=out_col, ideal=ideal_col)
                    )
                elif name in self.pod.embeddings:
                    scores[name] = await embedding_scores(self.embedder, out_col, ideal_col)
                elif name in self.pod.models:
                    component = self.pod.models[name]
                    served = served_model(name, component.source, self.judge.known_models())
                    scores[name] = await judge_scores(
                        self.judge, served, list(inputs), out_col, ideal_col
                    )
                else:
                    raise JobFailed(
                        f"Failed to load the scorer '{name}' needed for evaluation "
                        f"'{spec['eval']}': name a built-in scorer ({', '.join(BUILTIN)}) or "
                        "an embeddings:/models: component of the spicepod"
                    )
            except (EngineError, LookupError, ValueError) as exc:
                raise JobFailed(f"scorer '{name}' failed: {exc}") from None
        return scores


def _builtin(ctx: BlockingContext, name: str, out: Column, ideal: Column) -> list[float]:
    scores: list[float] = []
    for start in range(0, len(out), _CHECK_EVERY):
        ctx.check_cancelled()
        end = start + _CHECK_EVERY
        scores += score_batch(
            name, Column.of(out.values[start:end]), Column.of(ideal.values[start:end])
        )
    return scores
