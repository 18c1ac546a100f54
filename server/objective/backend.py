"""Objective's backend: the evaluation lifecycle (create, read, list, reset) and the job
that judges an evaluation (server/backend.py has the shape). The provider parses each
call and renders the answer (JSON or CSV); the SQL lives in store.py.

There is no ``jobs.py`` here, on purpose: the judging job's only work is one relevance
call per pair to the judge engine, which talks HTTP to a model server (or is the mock) and
lives in the API process. Its calls run as a sliding window of coroutines, bounded by
``[objective] concurrency``, and nothing in the job spends CPU or memory that grows with
the input beyond the rows it commits, so no step runs in a worker process and there is
no task function to hold.
"""

from __future__ import annotations

import asyncio
from typing import Any

from evaldock.engines.errors import EngineError
from evaldock.engines.protocols import RelevanceJudge

from .. import jsonio
from ..backend import Backend
from ..jobs import Job, commit_in_batches
from ..names import name_problem
from .errors import bad_name, evaluation_not_found, too_many_items
from .settings import ObjectiveSettings
from .store import Evaluation, EvaluationStore

FLUSH_EVERY = 32  # judged pairs per commit


class ObjectiveBackend(Backend[ObjectiveSettings]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = EvaluationStore(self.db, self.runner)

    @property
    def judge(self) -> RelevanceJudge:
        return self.ctx.engine("judge", RelevanceJudge)

    async def reset(self, tenant: str | None) -> None:
        await self.store.reset(tenant)

    # -- evaluations ------------------------------------------------------------------------
    async def create(self, tenant: str, eval_name: str | None, data: list[Any]) -> Evaluation:
        """Store the pairs and queue their judging, in one transaction."""
        # eval_name is stored and shown back in every listing: printable and not path-like.
        problem = None if eval_name is None else name_problem(eval_name, "configuration.eval_name")
        if problem is not None:
            raise bad_name(problem)
        limit = self.options.max_items
        if len(data) > limit:
            raise too_many_items(len(data), limit)
        return await self.store.create(tenant, eval_name, self.judge, data)

    async def get(self, tenant: str, evaluation_id: str) -> Evaluation:
        """The tenant's evaluation; Objective's 404 otherwise."""
        ev = await self.store.get(tenant, evaluation_id)
        if ev is None:
            raise evaluation_not_found(evaluation_id)
        return ev

    async def items(self, evaluation_id: str) -> list[dict[str, Any]]:
        return await self.store.items(evaluation_id)

    async def page(self, tenant: str, page: int, limit: int) -> tuple[list[Evaluation], int]:
        """One page of the tenant's evaluations, newest first, and how many there are."""
        return await self.store.page(tenant, page, limit)

    # -- the judging job --------------------------------------------------------------------
    async def run_evaluation(self, job: Job) -> None:
        """Judge every pair not judged yet, ``[objective] concurrency`` at a time (a sliding
        window, so one slow answer does not hold up the rest); results are committed every
        ``FLUSH_EVERY`` pairs with the progress, so a crash costs at most that much work
        and the job resumes from there."""
        judge = self.judge
        pending = await self.store.unjudged(job.id)
        count = await self.store.item_count(job.id)
        total = count if count is not None else len(pending)
        done = total - len(pending)
        await job.progress(done, total)
        gate = asyncio.Semaphore(self.options.concurrency)

        async def one(idx: int, raw: bytes) -> tuple[Any, ...]:
            async with gate:
                item = jsonio.decode(raw)
                try:
                    verdict = await judge.relevance(str(item["query"]), item.get("object") or {})
                except EngineError as exc:
                    return (None, None, None, str(exc) or type(exc).__name__, job.id, idx)
                return (verdict.score, verdict.label, verdict.explanation, None, job.id, idx)

        calls = (one(r["idx"], r["item"]) for r in pending)
        await commit_in_batches(
            job, calls, self.store.save_judgements, done=done, every=FLUSH_EVERY
        )
