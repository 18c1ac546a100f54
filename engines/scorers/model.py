"""Scorers that ask a model: embedding distance and LLM-judge scores.

In a spicepod any ``embeddings:`` component name and any ``models:`` component name is a
scorer. Spice (scorer/embed.rs, scorer/modelgraded.rs) scores each case as:

- embedding: the first choice's content or the text of each side, embedded together;
  ``1 / (1 + L2(emb(actual), emb(ideal)))`` on the vectors as the model returns them
  (no normalising here), in f32. Here every distinct text of the batch is embedded once,
  in one ``encode`` call in a worker thread.
- judge: one chat request with a single empty user message, ``store=true`` and
  ``metadata={"input", "actual", "ideal"}`` (each as Spice serialises it: text, or the list
  of messages/choices); the judge model's own prompt template reads the metadata. The
  score is the numeric ``score`` of the JSON reply; anything else fails the eval. Spice
  takes any number (the scale is its judge prompt's); here the prompt is evaldock's
  (json_score.v1, 0.0-1.0), whose bounds the judge puts in the output schema and holds the
  reply to (re-asked, then the case fails), so ``grader/mean`` stays on 0..1. Here
  that request is ``judge.json_score(messages, metadata, model=<component>,
  params={"store": True})``, up to ``concurrency`` at once; the first failure cancels the
  rest and raises :class:`EngineError` naming the case.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from evaldock.engines.errors import EngineError
from evaldock.engines.protocols import Embedder, Judge
from evaldock.engines.scorers.values import Column, Value, as_output, parse_input, to_json

# What Spice sends the judge model: its prompt lives in the model's configuration.
JUDGE_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": ""}]
JUDGE_PARAMS: dict[str, Any] = {"store": True}


def l2_scores(a: np.ndarray, b: np.ndarray) -> list[float]:
    """``1/(1 + ||a_i - b_i||)`` per row, in f32 as Spice computes it."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise EngineError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    diff = a - b
    distance = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float32))
    scores: list[float] = (np.float32(1.0) / (np.float32(1.0) + distance)).tolist()
    return scores


def embedding_scores_now(
    embedder: Embedder,
    outputs: Column | Iterable[Value],
    ideals: Column | Iterable[Value],
    *,
    batch_size: int = 64,
) -> list[float]:
    """``1 / (1 + L2)`` per case in f32, as Spice computes it: every distinct text of both
    columns embedded once, in one ``encode`` call. Blocking: call it where CPU work may
    run (a worker process), or through :func:`embedding_scores`."""
    out, ideal = Column.of(outputs), Column.of(ideals)
    if len(out) != len(ideal):
        raise ValueError(f"{len(out)} outputs but {len(ideal)} ideals: they pair row by row")
    if not len(out):
        return []
    unique = list(dict.fromkeys([*out.texts, *ideal.texts]))
    try:
        vectors = np.asarray(embedder.encode(unique, batch_size=batch_size))
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(f"embedding scorer: {embedder.model} failed: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[0] != len(unique):
        raise EngineError(
            f"embedding scorer: {embedder.model} returned shape {vectors.shape} "
            f"for {len(unique)} texts"
        )
    row = {text: i for i, text in enumerate(unique)}
    return l2_scores(vectors[[row[t] for t in out.texts]], vectors[[row[t] for t in ideal.texts]])


async def embedding_scores(
    embedder: Embedder,
    outputs: Column | Iterable[Value],
    ideals: Column | Iterable[Value],
    *,
    batch_size: int = 64,
) -> list[float]:
    """:func:`embedding_scores_now` in a thread (for an async caller)."""
    return await asyncio.to_thread(
        embedding_scores_now, embedder, outputs, ideals, batch_size=batch_size
    )


def judge_metadata(input_cell: Any, output: Value, ideal: Value) -> dict[str, Any]:
    """``{"input", "actual", "ideal"}`` as Spice puts them in the request's metadata."""
    return {
        "input": parse_input(input_cell),
        "actual": to_json(as_output(output)),
        "ideal": to_json(as_output(ideal)),
    }


async def judge_scores(
    judge: Judge,
    model: str,
    inputs: Sequence[Any],
    outputs: Column | Iterable[Value],
    ideals: Column | Iterable[Value],
    *,
    concurrency: int = 8,
) -> list[float]:
    """One judge score per case from ``judge.json_score(..., model=model)``.

    ``inputs`` are the dataset's input cells (text or chat-message arrays). ``UnknownModel``
    and ``EngineUnavailable`` from the judge pass through unchanged.
    """
    out, ideal = Column.of(outputs), Column.of(ideals)
    if not len(inputs) == len(out) == len(ideal):
        raise ValueError(
            f"{len(inputs)} inputs, {len(out)} outputs, {len(ideal)} ideals: they pair row by row"
        )
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int) -> float:
        metadata = judge_metadata(inputs[i], out.values[i], ideal.values[i])
        async with gate:
            try:
                value = await judge.json_score(
                    list(JUDGE_MESSAGES), metadata, model=model, params=dict(JUDGE_PARAMS)
                )
            except EngineError as exc:
                if type(exc) is not EngineError:  # EngineUnavailable: keep its fix
                    raise
                raise EngineError(f"judge scorer '{model}', case {i}: {exc}") from exc
            except LookupError:  # UnknownModel: the surface answers it in its own shape
                raise
            except Exception as exc:  # a judge bug must not look like a crash elsewhere
                raise EngineError(f"judge scorer '{model}', case {i}: {exc}") from exc
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EngineError(
                f"judge scorer '{model}', case {i}: the reply's score {value!r} is not a number"
            )
        if not math.isfinite(value):
            raise EngineError(f"judge scorer '{model}', case {i}: the score {value} is not finite")
        return float(value)

    tasks = [asyncio.create_task(one(i)) for i in range(len(out))]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
