"""The Spice surface's rules and state: the spicepod, eval specs added at run time, runs
(accepted, waited for, run as jobs), read-only SQL and reset.

The provider parses and renders; this decides, stores (:mod:`.store`) and hands every
step that grows with the input to a worker process (:mod:`.jobs`): reading a dataset,
the built-in models' answers, the built-in and embedding scorers, a SQL query. What stays
here is I/O: a served model's answers and the judge scorers (HTTP calls, up to
``[spice] concurrency`` at once), and the commit of results and metrics in one
transaction, as before, so a run cut off by a restart is redone from the start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from evaldock.engines.errors import EngineError
from evaldock.engines.protocols import Judge
from evaldock.engines.scorers import (
    BUILTIN,
    Column,
    InvalidValue,
    Output,
    metrics,
    output_of_completion,
    parse_input,
)
from evaldock.engines.scorers.model import judge_scores

from ..backend import Backend, BackendContext, TaskFailed
from ..compute import TaskLimits
from ..db import utcnow
from ..jobs import Job, JobFailed
from ..names import name_problem
from . import jobs, spicepod, sql
from .errors import bad_request, not_found
from .runs import completion, f32, run_signature, served_model
from .settings import SpiceSettings
from .spicepod import BUILTIN_MODELS, EvalSpec, Spicepod, SpicepodError
from .store import JOB_KIND, Run, SpiceStore, result_rows

log = logging.getLogger("evaldock.spice")

T = TypeVar("T")

# /v1/sql: the query's own timer stops it at [spice] sql_timeout; the task's wall-time
# limit, this much later, stops what that timer cannot reach (DataFusion's planner,
# which looks for no signal) and leaves room for a cold worker's imports of the task
# module (1.0 s idle, numpy, pyarrow and datafusion among them; over 2 s measured on a
# loaded machine), reading the caller's rows and the answer's way back.
SQL_GRACE_SECONDS = 3.0


class SpiceBackend(Backend[SpiceSettings]):
    def __init__(self, ctx: BackendContext[SpiceSettings]) -> None:
        super().__init__(ctx)
        self.pod = Spicepod(folder=Path("."))
        self.store = SpiceStore(self.db, self.runner)
        # Queries in flight: all but one of the request lane's workers, which the other
        # surfaces share (24 runaway queries held both for 65 s, each to its 5 s limit).
        self._sql_slots = asyncio.Semaphore(max(1, ctx.settings.jobs.request_workers - 1))

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def roots(self) -> list[Path]:
        """Folders a dataset file may lie in."""
        return [self.pod.folder, *(Path(d).expanduser() for d in self.options.dataset_dirs)]

    @property
    def runs_dir(self) -> Path:
        """Where a running eval's cases and result texts wait between its tasks."""
        return self.ctx.data_dir / "runs"

    async def startup(self) -> None:
        path = Path(self.options.spicepod).expanduser() if self.options.spicepod else None
        try:
            self.pod = spicepod.load(path or spicepod.example_path())
        except SpicepodError as exc:
            from ..config import ConfigError

            raise ConfigError(str(exc)) from None
        log.info("spice: spicepod %s with %d evals", path or "(example)", len(self.pod.evals))
        await self._sweep()

    async def _sweep(self) -> None:
        """Files of runs no job will go on with (a stop cut them off, and the run then
        failed): a run resumed after a restart writes its own again."""
        if not self.runs_dir.is_dir():
            return
        active = {v.id for v in await self.runner.views(JOB_KIND, active_only=True)}
        for path in self.runs_dir.iterdir():
            if path.name.split(".", 1)[0] not in active:
                path.unlink(missing_ok=True)

    def _judge(self) -> Judge:
        """The judge engine (API process: it talks to a model server)."""
        return self.ctx.engine("judge", Judge)

    def _file(self, run_id: str, kind: str) -> Path:
        return self.runs_dir / f"{run_id}.{kind}"

    def _remove_files(self, run_id: str) -> None:
        for path in self.runs_dir.glob(f"{run_id}.*"):
            path.unlink(missing_ok=True)

    async def reset(self, tenant: str | None) -> None:
        for run_id in await self.store.reset(tenant):
            self._remove_files(run_id)

    # -- eval specs ---------------------------------------------------------------------
    async def specs(self, tenant: str) -> dict[str, EvalSpec]:
        """name -> spec, the tenant's own shadowing the spicepod's."""
        specs = dict(self.pod.evals)
        specs.update({s.name: s for s in await self.store.specs(tenant)})
        return specs

    async def put_spec(
        self,
        tenant: str,
        name: str,
        dataset: str,
        scorers: list[str],
        description: str | None = None,
        data: list[Any] | None = None,
        source: str | None = None,
    ) -> EvalSpec:
        """Add (or replace) the tenant's eval ``name`` over ``dataset``: the cases given
        in ``data``, a file named by ``source``, or a dataset already known by name."""
        if not name.strip() or len(name) > 128:
            raise bad_request("an eval name must have 1 to 128 characters")
        for value, what in ((name, "eval name"), (dataset, "dataset name")):
            problem = name_problem(value, what)
            if problem is not None:
                raise bad_request(problem)
        scorers = list(dict.fromkeys(scorers))
        known = {*BUILTIN, *self.pod.embeddings, *self.pod.models}
        unknown = [s for s in scorers if s not in known]
        if unknown:
            raise bad_request(
                f"scorer '{unknown[0]}' is not defined; use a built-in ({', '.join(BUILTIN)})"
                f" or a component of the spicepod ({', '.join(sorted(known - set(BUILTIN)))})"
            )
        if data is not None and source is not None:
            raise bad_request("give the cases in data or a file in from, not both")
        rows: list[dict[str, Any]] | None = None
        file: str | None = None
        if data is not None:
            try:
                rows = spicepod.check_rows(data, "data", self.options.max_cases)
            except SpicepodError as exc:
                raise bad_request(str(exc)) from None
        elif source is not None:
            try:
                file = str(spicepod.resolve_file(source, self.roots, self.pod.folder))
            except SpicepodError as exc:
                raise bad_request(str(exc)) from None
        elif dataset not in self.pod.datasets and await self.store.dataset(tenant, dataset) is None:
            raise not_found("dataset", dataset)
        spec = EvalSpec(name, dataset, tuple(scorers), description)
        await self.store.put_spec(tenant, spec, rows, file)
        return spec

    async def delete_spec(self, tenant: str, name: str) -> None:
        if await self.store.delete_spec(tenant, name):
            return
        if name in self.pod.evals:
            raise bad_request(
                f"eval '{name}' comes from the spicepod; remove it from "
                f"{self.options.spicepod or 'the spicepod file'} instead"
            )
        raise not_found("eval", name)

    # -- runs ---------------------------------------------------------------------------
    async def start_run(self, tenant: str, name: str, model: str) -> str:
        """Accept a run of eval ``name`` with ``model`` and queue its job; its id."""
        spec = (await self.specs(tenant)).get(name)
        if spec is None:
            raise not_found("eval", name)
        if model not in BUILTIN_MODELS and model not in self.pod.models:
            raise not_found("model", model)
        source = await self._source(tenant, spec.dataset)
        return await self.store.create_run(
            tenant,
            {
                "eval": spec.name,
                "dataset": spec.dataset,
                "model": model,
                "scorers": list(spec.scorers),
                "source": source,
            },
            0,
        )

    async def wait_run(self, run_id: str, timeout: float) -> Run:
        """The run once done, or as it stands after ``timeout`` seconds (woken by the
        job's end, not by polling)."""
        await self.runner.wait(run_id, max(0.0, timeout))
        run = await self.store.run(run_id)
        if run is None:  # a reset deleted it meanwhile
            raise not_found("run", run_id)
        return run

    async def run(self, tenant: str, name: str, run_id: str) -> Run | None:
        """The tenant's run ``run_id`` of eval ``name``, or None."""
        run = await self.store.run(run_id, tenant)
        return run if run is not None and run.eval == name else None

    async def _source(self, tenant: str, dataset: str) -> dict[str, Any]:
        """Where the run reads its cases: the tenant's uploaded dataset, a file, or the
        reason the spicepod's dataset cannot be read (the run then fails with it)."""
        stored = await self.store.dataset(tenant, dataset)
        if stored is not None:
            rows, file = stored
            if rows is None and file:
                # Checked again: [spice] dataset_dirs may have changed since the PUT, or
                # the file been swapped for a link out of them.
                try:
                    return {"file": str(spicepod.resolve_file(file, self.roots, self.pod.folder))}
                except SpicepodError as exc:
                    return {"error": str(exc)}
            return {"tenant": tenant}
        component = self.pod.datasets.get(dataset)
        if component is None:
            raise not_found("dataset", dataset)
        try:
            path = spicepod.resolve_file(component.source, self.roots, self.pod.folder)
        except SpicepodError as exc:
            return {"error": str(exc)}
        return {"file": str(path)}

    # -- the eval job -------------------------------------------------------------------
    async def run_eval(self, job: Job) -> None:
        """The job behind ``POST /v1/evals/{name}``; a model or scorer that fails ends
        the run ``Failed`` with the reason."""
        run = await self.store.run(job.id)
        if run is None:  # deleted by a reset while queued
            return
        try:
            await self._run_eval(job, run)
        finally:
            self._remove_files(job.id)

    async def _run_eval(self, job: Job, run: Run) -> None:
        spec = run.spec
        model = spec["model"]
        cases = await self._task(
            job,
            f"reading dataset '{spec['dataset']}'",
            jobs.read_cases,
            spec["source"],
            str(self.db.path),
            spec["dataset"],
            model,
            self.options.max_cases,
            str(self._file(job.id, "cases")),
        )
        await job.progress(0, cases.count)
        scorers = list(dict.fromkeys(spec["scorers"]))
        builtin, embedding, judged = self._scorer_kinds(scorers, spec["eval"])
        served = model not in BUILTIN_MODELS
        judge = self._judge() if served or judged else None
        # A served model and the judge scorers are HTTP calls from here: they need the
        # cases in this process (read back a bounded chunk at a time).
        loaded = await self._load(cases) if judge is not None else []
        outputs: list[Output] | None = None
        served_as: str | None = None
        if served:
            assert judge is not None
            outputs, served_as = await self._answers(judge, model, loaded)
        scored = await self._task(
            job,
            f"scoring {cases.count} case{'' if cases.count == 1 else 's'}",
            jobs.score_cases,
            cases,
            outputs,
            builtin,
            embedding,
            str(self._file(job.id, "texts")),
        )
        scores = dict(scored.scores)
        judged_as: dict[str, str] = {}
        if judged:
            assert judge is not None
            judged_as = await self._judge_scores(judge, judged, loaded, outputs, scores)
        ordered = {name: scores[name] for name in scorers}
        signature = run_signature(
            model,
            scorers,
            served=served_as,
            judged=judged_as,
            judge=judge.signature if judge is not None else None,
            embedder=scored.engines.get("embedder"),
        )
        means = {k: f32(v) for k, v in metrics(ordered).items()}
        now = utcnow()
        async with self.db.transaction() as tx:
            await self.store.clear_results(tx, job.id)
            start = 0
            for chunk in scored.texts.chunks():
                rows = result_rows(job.id, run.tenant, start, chunk, ordered, now)
                await self.store.add_results(tx, rows)
                start += len(chunk)
                await asyncio.sleep(0)  # reads go on between chunks of a large run
            await self.store.finish_run(tx, job.id, means, signature)
            await job.progress(cases.count, cases.count, conn=tx)

    def _scorer_kinds(
        self, scorers: list[str], eval_name: str
    ) -> tuple[list[str], list[str], list[str]]:
        """(built-in, embedding, judge) scorers, as the runtime resolves a name: a
        built-in first, then an embeddings: component, then a models: component."""
        builtin = [s for s in scorers if s in BUILTIN]
        embedding = [s for s in scorers if s not in BUILTIN and s in self.pod.embeddings]
        judged = [s for s in scorers if s not in {*builtin, *embedding} and s in self.pod.models]
        for name in scorers:
            if name not in {*builtin, *embedding, *judged}:
                raise JobFailed(
                    f"Failed to load the scorer '{name}' needed for evaluation "
                    f"'{eval_name}': name a built-in scorer ({', '.join(BUILTIN)}) or "
                    "an embeddings:/models: component of the spicepod"
                )
        return builtin, embedding, judged

    async def _judge_scores(
        self,
        judge: Judge,
        judged: list[str],
        cases: list[jobs.Case],
        outputs: list[Output] | None,
        scores: dict[str, list[float]],
    ) -> dict[str, str]:
        """Scores of the judge scorers ``judged`` into ``scores``; the models they were
        served as."""
        out = Column.of(outputs if outputs is not None else [c[2] for c in cases])
        ideal = Column.of([c[1] for c in cases])
        inputs = [c[0] for c in cases]
        served: dict[str, str] = {}
        for name in judged:
            component = self.pod.models[name]
            served[name] = served_model(name, component.source, judge.known_models())
            try:
                scores[name] = await judge_scores(judge, served[name], inputs, out, ideal)
            except (EngineError, LookupError, ValueError) as exc:
                raise JobFailed(f"scorer '{name}' failed: {exc}") from None
        return served

    async def _task(self, job: Job, step: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in a worker; the run fails with the task's reason, or with the limit it
        went over (naming the setting) and the step it stopped in."""
        try:
            return await job.run_task(fn, *args)
        except jobs.EvalFailed as exc:
            raise JobFailed(str(exc)) from None
        except JobFailed as exc:
            raise JobFailed(f"{step}: {exc}") from None

    async def _load(self, cases: jobs.Spilled[jobs.Case]) -> list[jobs.Case]:
        loaded: list[jobs.Case] = []
        for chunk in cases.chunks():
            loaded += chunk
            await asyncio.sleep(0)
        return loaded

    async def _answers(
        self, judge: Judge, model: str, cases: list[jobs.Case]
    ) -> tuple[list[Output], str]:
        """A spicepod model's answer to every case (a chat completion each, through the
        judge's routing), and the name it was served as."""
        first: Output = cases[0][1] if cases else ""
        component = self.pod.models[model]
        served = served_model(model, component.source, judge.known_models())
        gate = asyncio.Semaphore(max(1, self.options.concurrency))

        async def one(cell: Any) -> Output:
            value = parse_input(cell)
            messages = [{"role": "user", "content": value}] if isinstance(value, str) else value
            async with gate:
                generation = await judge.generate(messages, model=served)
            return output_of_completion(completion(generation.text), first)

        tasks = [asyncio.create_task(one(case[0])) for case in cases]
        try:
            return list(await asyncio.gather(*tasks)), served
        except (EngineError, LookupError, InvalidValue) as exc:
            raise JobFailed(f"model '{model}' (served as '{served}') failed: {exc}") from None
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- SQL ----------------------------------------------------------------------------
    async def query(self, tenant: str, text: str) -> tuple[list[str], list[dict[str, Any]]]:
        """(columns, rows) of a read-only query over the tenant's eval.runs and
        eval.results, run in a worker of the request lane; a 400 with the reason when
        it is refused, stopped, or found no free slot within ``[spice] sql_timeout``."""
        o = self.options
        try:
            async with asyncio.timeout(o.sql_timeout):
                await self._sql_slots.acquire()
        except TimeoutError:
            raise bad_request(
                f"other queries kept every query slot busy for {o.sql_timeout:g} s "
                "(setting [spice] sql_timeout); try again"
            ) from None
        try:
            return await self.ctx.task(
                jobs.run_sql,
                str(self.db.path),
                tenant,
                text,
                o.sql_timeout,
                o.sql_max_rows,
                o.sql_max_bytes,
                o.sql_memory_mb,
                limits=self._sql_limits(),
            )
        except sql.QueryRefused as exc:
            raise bad_request(str(exc)) from None
        except TaskFailed as exc:
            raise bad_request(f"the query could not finish: {exc.message}") from None
        finally:
            self._sql_slots.release()

    def _sql_limits(self) -> TaskLimits:
        return (
            self.ctx.limits("request")
            .tighter(
                "[spice] sql_timeout", wall_seconds=self.options.sql_timeout + SQL_GRACE_SECONDS
            )
            .tighter("[spice] sql_memory_mb", memory_mb=self.options.sql_memory_mb)
        )
