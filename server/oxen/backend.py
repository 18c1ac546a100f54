"""Oxen's rules and state: repositories, branches, uploads, data frames and evaluations.

The provider parses a request, calls one method here and renders the answer in Oxen's
envelope. SQL lives in :mod:`.store` (repositories, commits, branches, trees) and
:mod:`.evaluations` (evaluation records). Work that grows with a file runs as a task of
:mod:`.jobs` in a worker process, never in this one: a request's in the request lane
(:meth:`_task`; a task stopped over a limit is Oxen's 400 with the reason, which names
the setting to raise), an evaluation's in the job lane (``job.run_task``; the evaluation
fails with the reason). What stays here is bounded: SQL, the judge's HTTP calls, and
small file moves.

The evaluation job (:meth:`OxenBackend.run_evaluation`): read the pinned source file,
fill ``target_column``, commit. Column-wise and in bounded memory (one step's rows,
whatever the row count):

1. ``text``: a task renders the prompts of the rows left into part files of
   ``batch_size`` rows; per step, the step's prompts are read back (a task), generated
   here (``[oxen] concurrency`` in flight; the judge is an HTTP client) and written as one
   part (a task) with the step's token counts, then the progress is committed.
   ``embeddings``: one task reads the source in ``embed_chunk_rows`` steps, encodes each
   (``embed_batch_size`` texts per forward pass; the embedder lives in the worker) and
   writes one part per step, reporting progress as it goes;
2. each step's results are one Arrow IPC part file under
   ``<data>/oxen/work/<evaluation id>/part-<first row>.arrow`` (temporary name, then
   rename: a part on disk is whole);
3. a task streams the results column alone, part by part, into a parquet blob
   (``GET .../results``); then, unless the run is a sample or ``auto_commit`` is false,
   a task writes the file with the column added by streaming the base file's batches
   beside the parts (8,192 rows a batch) and stores it as a blob (fsynced); only then is
   it committed, so no branch ever names a blob that is not on disk. The commit names the
   head it was built from (``expected_parent``): a target branch that moved meanwhile gets
   the result on top, or, if the other commit changed the same file, the evaluation fails
   with ``conflict_target_branch`` set and the other commit stays.

Restart: a job found running after a crash is requeued; it keeps the whole parts on disk
(rows 0..n-1, token counts included) and goes on from row n, so at most one step
(``batch_size`` rows) is generated twice. The parts are removed when the evaluation
ends; a cancelled or interrupted run's parts are swept at the next start-up, reset or
deletion of its repository.

A generation error on any row fails the evaluation with ``error_message`` naming the
first failing row; nothing is committed (a half-filled column is never written).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel
from evaldock.engines.protocols import Judge

from ..backend import Backend, BackendContext
from ..compute import InputFile, TaskFailed
from ..db import utcnow
from ..jobs import Job, JobCancelled, JobFailed, JobView
from . import jobs, tables
from .blobs import BlobNotFound
from .errors import CommitConflict, OxenApiError, OxenStoreError, bad_request, not_found
from .evaluations import EVALUATION_JOB, EvalRequest, EvaluationRecords, Source, parse_request
from .filetypes import FileType
from .merkle import TreeFile
from .paths import check_branch_name, clean_path, join, parent
from .prompts import PromptInvalid, compile_prompt
from .settings import OxenSettings
from .store import (
    DEFAULT_BRANCH,
    Branch,
    Commit,
    DirListing,
    Entry,
    OxenStore,
    Page,
    Repo,
    Revision,
)
from .uploads import boundary_of

T = TypeVar("T")


# oxen-server's MAX_ZIP_DOWNLOAD_SIZE (liboxen constants.rs): 1 GiB of files a zip.
MAX_ZIP_DOWNLOAD_BYTES = 1024 * 1024 * 1024
# Content hashes one QUERY .../versions may name: the client batches a folder's small
# files by ~10 MiB of bytes, so a batch of a million tiny files (33 MB of hex) is the most
# a real download sends.
MAX_VERSIONS = 1_000_000


class OxenBackend(Backend[OxenSettings]):
    def __init__(self, ctx: BackendContext[OxenSettings]) -> None:
        super().__init__(ctx)
        # Blobs live under <data>/oxen/blobs; tasks get the server's data folder.
        self.root = str(ctx.settings.data_dir)
        self.store = OxenStore(self.db, ctx.settings.data_dir)
        self.records = EvaluationRecords(self.db)
        # One folder per running (or interrupted) evaluation: its results in parts.
        self.work_root = ctx.data_dir / "work"
        # (model, signature) of the embedder the workers build: asked once, it is fixed
        # by the settings.
        self._embedder: tuple[str, str] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        await self._sweep_work()

    async def reset(self, tenant: str | None) -> None:
        rows = await self.db.fetchall(
            "SELECT id FROM oxen_evaluations WHERE (? IS NULL OR tenant = ?)", (tenant, tenant)
        )
        async with self.db.transaction() as tx:
            await self.runner.forget(tx, [r["id"] for r in rows])
            await tx.execute(
                "DELETE FROM oxen_repos WHERE (? IS NULL OR tenant = ?)", (tenant, tenant)
            )
        await self._sweep_work()
        # Blobs are shared across tenants (content-addressed): collect the unreferenced.
        referenced = sorted(await self.store.referenced_blobs())
        age = 0.0 if tenant is None else 3600.0
        await self.ctx.task(jobs.collect_blobs, self.root, referenced, age)

    def work_dir(self, job_id: str) -> Path:
        """Where an evaluation's results column is written in parts (one per step)."""
        return self.work_root / job_id

    async def _sweep_work(self) -> None:
        """Remove the results parts of evaluations that are over (a cancelled or killed
        run leaves its parts for a requeue; once the job is done nobody reads them)."""
        root = self.work_root
        if not root.is_dir():
            return
        live = await self.db.fetchall(
            "SELECT id FROM job_view WHERE status IN ('queued', 'running', 'waiting')"
        )
        keep = {r["id"] for r in live}
        stale = [str(f) for f in root.iterdir() if f.name not in keep]
        if stale:
            await self.ctx.task(jobs.remove_folders, stale)

    async def _task(self, failure: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in the request lane; a task stopped over a limit (or whose worker died)
        is a 400 that says what could not be done and which setting to raise."""
        try:
            return await self.ctx.task(fn, *args)
        except TaskFailed as e:
            raise bad_request(f"{failure}: {e.message}") from None

    # -- repositories ----------------------------------------------------------------------

    async def create_repo(
        self,
        tenant: str,
        namespace: str,
        name: str,
        files: Sequence[tuple[str, str]],
        author: str,
        email: str,
    ) -> Repo:
        """A repository, with a first commit on ``main`` of ``files`` ((path, text))."""
        named = [(clean_path(path), text) for path, text in files]
        stored: list[jobs.Stored] = []
        if named:
            stored = await self._task(
                "the files could not be stored", jobs.store_texts, self.root, named
            )
        paths = [path for path, _ in named]
        repo, _ = await self.store.create_repo(
            tenant,
            namespace,
            name,
            {path: s.blob for path, s in zip(paths, stored, strict=True)},
            author,
            email,
            types={path: s.type for path, s in zip(paths, stored, strict=True)},
        )
        return repo

    async def repo(self, tenant: str, namespace: str, name: str) -> Repo:
        return await self.store.get_repo(tenant, namespace, name)

    async def latest_commit(self, repo: Repo) -> Commit | None:
        return await self.store.latest_commit(repo)

    async def delete_repo(self, tenant: str, namespace: str, name: str) -> None:
        """Delete the repository, and stop its evaluations (their running tasks are
        killed); its blobs go at the next collection."""
        repo = await self.store.get_repo(tenant, namespace, name)
        rows = await self.db.fetchall(
            "SELECT id FROM oxen_evaluations WHERE repo_id = ?", (repo.id,)
        )
        if rows:
            async with self.db.transaction() as tx:
                await self.runner.forget(tx, [r["id"] for r in rows])
        await self.store.delete_repo(tenant, namespace, name)
        if rows:
            await self._sweep_work()

    async def resource(self, repo: Repo, resource: str) -> Revision:
        return await self.store.resolve_resource(repo, resource)

    # -- branches --------------------------------------------------------------------------

    async def branches(self, repo: Repo) -> list[Branch]:
        return await self.store.list_branches(repo)

    async def create_branch(
        self, repo: Repo, new_name: str, from_name: str | None, commit_id: str | None
    ) -> tuple[Branch, bool]:
        # oxen-server answers an existing name with that branch (resource_found).
        return await self.store.create_branch(
            repo, new_name, from_name=from_name, commit_id=commit_id, exist_ok=True
        )

    async def branch(self, repo: Repo, name: str) -> Branch:
        return await self.store.get_branch(repo, name)

    async def delete_branch(self, repo: Repo, name: str) -> Branch:
        return await self.store.delete_branch(repo, name)

    # -- files -----------------------------------------------------------------------------

    async def file(self, repo: Repo, revision: Revision) -> tuple[Path, FileType]:
        """The blob file of the file at ``revision`` (streamed by the response)."""
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        path = self.store.blobs.path(entry.blob_key)
        if not path.is_file():
            raise BlobNotFound(entry.blob_key)
        return path, entry.file_type

    async def upload(
        self, repo: Repo, resource: str, body: Path | None, content_type: str
    ) -> Commit:
        """Commit the files of a multipart upload (streamed to ``body`` by the pipeline)
        into ``{branch}/{dir}``; the parts are parsed, hashed and stored in a worker."""
        branch, folder = await self._upload_target(repo, resource)
        if body is None:
            raise bad_request("send the files as multipart/form-data (files[], name, email)")
        # The Content-Type is checked here, before a worker is spent on the body.
        boundary_of(content_type)
        stored = await self._task(
            "the upload could not be stored", jobs.store_upload, self.root, str(body), content_type
        )
        upload = stored.upload
        if not upload.files:
            raise bad_request("no file parts: send each file as a 'files[]' part with a filename")
        files = {join(folder, name): blob for name, blob in upload.files}
        return await self.store.commit_files(
            repo,
            branch,
            files,
            upload.fields.get("name", ""),
            upload.fields.get("email", ""),
            upload.fields.get("message") or "Upload files",
            types={join(folder, name): t for name, t in stored.types.items()},
        )

    async def _upload_target(self, repo: Repo, resource: str) -> tuple[str, str]:
        """``{branch}/{dir}``; an empty repository takes the first segment as the branch
        it creates (oxen-server's initial upload)."""
        if await self.store.is_empty(repo):
            branch, _, folder = resource.strip("/").partition("/")
            check_branch_name(branch or DEFAULT_BRANCH)
            return branch or DEFAULT_BRANCH, clean_path(folder, allow_root=True)
        revision = await self.store.resolve_resource(repo, resource)
        if revision.branch is None:
            raise bad_request(
                f"uploads go to a branch, and {revision.version} is a commit; name a branch"
                " (GET .../branches lists them)"
            )
        return revision.branch.name, revision.path

    async def zip_folder(self, repo: Repo, revision: Revision) -> Path:
        """The folder at ``revision`` as a zip written for this response (the caller
        removes it), bounded like oxen-server's export (1 GiB of files)."""
        files = await self.store.files_under(repo, revision)
        total = sum(size for _, _, size in files)
        if total > MAX_ZIP_DOWNLOAD_BYTES:
            # oxen-server's own wording (controllers/export.rs), plus the way around it.
            raise bad_request(
                f"Download request exceeded size limit ({MAX_ZIP_DOWNLOAD_BYTES} bytes) for zip"
                f" file downloads: found {total} bytes; download a smaller folder or the"
                " files one by one (RemoteRepo.download(<path>))"
            )
        blobs = self.store.blobs
        entries = [(name, str(blobs.path(key)), size) for name, key, size in files]
        name = await self._task(
            f"{revision.path or 'the repository'} could not be zipped",
            jobs.zip_files,
            entries,
            str(blobs.tmp_dir),
        )
        return Path(name)

    # -- Merkle tree transport (RemoteRepo.download of a folder) ---------------------------

    async def tree_download(
        self, repo: Repo, commit: str, subtrees: Sequence[str], depth: int
    ) -> Path:
        """Oxen's tree nodes of each folder in ``subtrees`` (``""``: the top folder) at
        ``commit``, down to ``depth`` folder levels (-1 = all), as a tar.gz written for this
        response (the caller removes it). A path naming a file serves its folder, one level
        deep: what the client reads for a file."""
        folders: list[tuple[str, list[TreeFile], dict[str, int], int]] = []
        for raw in subtrees or [""]:
            revision = await self.store.resolve_resource(repo, join(commit, raw))
            entry = await self.store.entry(repo, revision, revision.path)
            levels = depth
            if not entry.is_dir:
                revision = Revision(revision.commit, revision.branch, parent(revision.path))
                levels = 0
            files, rank = await self.store.tree_files(repo, revision)
            folders.append((revision.path.rpartition("/")[2], files, rank, levels))
        name, _ = await self._task(
            "the tree could not be built",
            jobs.tree_nodes,
            folders,
            str(self.store.blobs.tmp_dir),
        )
        return Path(name)

    async def node_hash(self, repo: Repo, revision: Revision) -> str:
        """The hash of the node at ``revision.path``: a folder's node as
        :meth:`tree_download` builds it, a file's content hash."""
        entry = await self.store.entry(repo, revision, revision.path)
        if not entry.is_dir:
            return entry.hash
        files, _ = await self.store.tree_files(repo, revision)
        return await self._task(
            "the tree could not be built",
            jobs.tree_hash,
            files,
            revision.path.rpartition("/")[2],
        )

    async def versions(self, repo: Repo, body: Path | None) -> Path:
        """``QUERY .../versions``: the gzipped list of content hashes in ``body`` answered by
        a tar.gz of those files in the same order (the caller removes it)."""
        if body is None:
            raise bad_request(
                "QUERY .../versions takes a gzipped list of content hashes, one a line"
            )
        try:
            hashes = await self._task(
                "the list of hashes could not be read", jobs.read_hashes, str(body), MAX_VERSIONS
            )
        except jobs.HashListInvalid as e:
            raise bad_request(f"QUERY .../versions: {e}") from None
        found = await self.store.blobs_by_hash(repo, hashes)
        missing = [h for h in hashes if h not in found]
        if missing:
            raise not_found(
                f"{len(missing)} of the {len(hashes)} requested versions are not in"
                f" {repo.namespace}/{repo.name} (first: {missing[0]}); list the folder again"
                " with RemoteRepo.ls and download what it names"
            )
        blobs = self.store.blobs
        files = [(h, str(blobs.path(found[h]))) for h in hashes]
        name = await self._task(
            "the files could not be packed", jobs.versions_tar, files, str(blobs.tmp_dir)
        )
        return Path(name)

    async def chunk(self, repo: Repo, revision: Revision, start: int, size: int) -> Path:
        """Bytes ``[start, start + size)`` of the file at ``revision`` (cut at its end) in a
        file written for this response (the caller removes it)."""
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        if start > entry.size:
            raise bad_request(
                f"chunk_start {start} is past the end of {entry.path} ({entry.size} bytes)"
            )
        size = min(size, entry.size - start)
        blobs = self.store.blobs
        name = await self._task(
            "the chunk could not be read",
            jobs.blob_range,
            str(blobs.path(entry.blob_key)),
            start,
            size,
            str(blobs.tmp_dir),
        )
        return Path(name)

    async def entry(self, repo: Repo, revision: Revision) -> Entry:
        return await self.store.entry(repo, revision, revision.path)

    async def list_dir(self, repo: Repo, revision: Revision, page: int, size: int) -> DirListing:
        return await self.store.list_dir(repo, revision, revision.path, page, size)

    async def history(self, repo: Repo, revision: Revision, page: int, size: int) -> Page[Commit]:
        return await self.store.history(repo, revision.commit.id, page, size)

    async def data_frame(
        self, repo: Repo, revision: Revision, page: int, size: int
    ) -> jobs.RowsPage:
        """One page of a tabular file's rows, read in a worker: a parquet bomb or a
        pathological CSV costs that worker, and answers a 400 with the reason."""
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        fmt = tables.table_format(revision.path)
        blob = self.store.blobs.path(entry.blob_key)
        return await self._task(
            f"{revision.path} could not be read",
            jobs.page_rows,
            str(blob),
            fmt,
            revision.path,
            page,
            size,
            self.options.max_page_mb,
        )

    # -- evaluations -----------------------------------------------------------------------

    async def create_evaluation(
        self, tenant: str, repo: Repo, revision: Revision, body: dict[str, Any]
    ) -> str:
        """Check an evaluation request against the file and the models served, record it
        and queue its job; its id. Nothing is queued for a request that would fail."""
        if not revision.path:
            raise bad_request(
                "name a file after the branch: .../evaluations/<branch>/<path/to/data.parquet>"
            )
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        request = parse_request(body, self.options)
        problem = tables.column_name_problem(request.target_column)
        if problem is not None:
            raise bad_request(problem)
        model_ran, signature = await self._check_model(request)
        if request.target_branch is not None:
            check_branch_name(request.target_branch)
        elif revision.branch is None and request.auto_commit and not request.is_sample:
            raise bad_request(
                f"{revision.version} is a commit, not a branch: name target_branch for the results"
            )
        if request.target_path is not None:
            clean_path(request.target_path)
            tables.table_format(request.target_path)
        fmt = tables.table_format(revision.path)
        blob = self.store.blobs.path(entry.blob_key)
        table = await self._task(
            f"{revision.path} could not be read", jobs.table_info, str(blob), fmt, revision.path
        )
        compile_prompt(request.prompt, table.columns)  # 400 naming the bad placeholder
        if (
            request.target_column in table.columns
            and not request.overwrite
            and request.target_path in (None, revision.path)
        ):
            raise bad_request(
                f"column {request.target_column!r} already exists in {revision.path}; pick"
                ' another target_column, or send "overwrite": true to replace it'
            )
        total = min(table.num_rows, request.sample_count) if request.is_sample else table.num_rows
        eval_id = str(uuid.uuid4())
        source = Source(revision.version, revision.path, revision.commit.id)
        async with self.db.transaction() as tx:
            await self.records.insert(
                tx, eval_id, tenant, repo.id, request, source, model_ran, signature
            )
            await self.runner.submit(tx, eval_id, EVALUATION_JOB, tenant, total)
        return eval_id

    async def _embedder_identity(self) -> tuple[str, str]:
        """(model, signature) of the embedder, as a worker builds it from the settings
        (building it loads no model)."""
        if self._embedder is None:
            self._embedder = await self._task(
                "the embedder could not be built", jobs.embedder_identity
            )
        return self._embedder

    async def _check_model(self, request: EvalRequest) -> tuple[str, str]:
        """(the model that will really run, its engine signature), or a 400 listing the
        known models; a text model without a served generator names EVALDOCK_JUDGE_URLS."""
        judge = self.ctx.engine("judge", Judge)
        try:
            embedder: tuple[str, str] | None = await self._embedder_identity()
        except EngineUnavailable as e:
            if request.type == "embeddings":
                raise bad_request(
                    f"type embeddings needs an embedder and none can be built: {e.message};"
                    f" fix: {e.hint}"
                ) from None
            embedder = None
        embedding_names = [*self.options.embedding_models, *(embedder[:1] if embedder else ())]
        text_names = judge.known_models()
        known = (
            f"text models: {', '.join(text_names) or 'none'}; embedding models:"
            f" {', '.join(dict.fromkeys(embedding_names))}"
        )
        if request.type == "embeddings":
            assert embedder is not None
            if request.model not in embedding_names:
                raise bad_request(
                    f"model {request.model!r} is not an embedding model here ({known});"
                    " map more names in [oxen] embedding_models"
                )
            return embedder
        if request.model in embedding_names and request.model not in text_names:
            raise bad_request(
                f'model {request.model!r} makes embeddings; send "type": "embeddings"'
                f" or a text model ({known})"
            )
        try:
            served = _resolve_generator(judge, request.model)
        except UnknownModel as e:
            raise bad_request(
                f"model {request.model!r} is not served here ({known}); {e.hint}"
            ) from None
        except EngineUnavailable as e:
            raise bad_request(
                f"type text needs a generation model and none is served: {e.message}; fix: {e.hint}"
            ) from None
        return served, judge.generation_signature(request.model)

    async def evaluation(
        self, tenant: str, repo: Repo, eval_id: str
    ) -> tuple[dict[str, Any], JobView | None]:
        """The evaluation's record and its job, or a 404 unless it is this repository's."""
        row = await self.records.get(eval_id, tenant)
        if row is None or row["repo_id"] != repo.id:
            raise not_found(f"evaluation {eval_id} not found in {repo.namespace}/{repo.name}")
        return row, await self.runner.view(eval_id)

    async def evaluations(
        self, repo: Repo, page: int, size: int
    ) -> tuple[list[tuple[dict[str, Any], JobView | None]], int]:
        rows, total = await self.records.for_repo(repo.id, page, size)
        return [(r, await self.runner.view(r["id"])) for r in rows], total

    async def cancel_evaluation(self, tenant: str, repo: Repo, eval_id: str) -> None:
        """Cancel a queued or running evaluation (a running task is killed at once)."""
        await self.evaluation(tenant, repo, eval_id)  # 404 unless it is ours
        await self.runner.cancel(eval_id)

    async def _results_blob(self, tenant: str, repo: Repo, eval_id: str) -> Path:
        row, _ = await self.evaluation(tenant, repo, eval_id)
        if not row["results_blob"]:
            job = await self.runner.view(eval_id)
            state = job.status if job else "unknown"
            raise OxenApiError(
                409,
                f"evaluation {eval_id} has no results yet (status {state}); poll"
                " GET .../evaluations/<id> until it is completed",
                "conflict",
            )
        return self.store.blobs.path(row["results_blob"])

    async def results_page(
        self, tenant: str, repo: Repo, eval_id: str, page: int, size: int
    ) -> jobs.RowsPage:
        blob = await self._results_blob(tenant, repo, eval_id)
        return await self._task(
            "the results could not be read",
            jobs.page_rows,
            str(blob),
            "parquet",
            "the results",
            page,
            size,
            self.options.max_page_mb,
        )

    async def results_csv(self, tenant: str, repo: Repo, eval_id: str) -> Path:
        """The results as a CSV file written for this response (the caller removes it)."""
        blob = await self._results_blob(tenant, repo, eval_id)
        folder = str(self.store.blobs.tmp_dir)
        name = await self._task(
            "the results could not be read", jobs.results_csv, str(blob), folder
        )
        return Path(name)

    # -- the evaluation job ----------------------------------------------------------------

    async def run_evaluation(self, job: Job) -> None:
        row = await self.records.get(job.id)
        if row is None:
            raise JobFailed("the evaluation's record is gone (deleted while queued)")
        if row["closing_commit"]:
            return  # committed before a crash cut the job off: nothing left to do
        req = EvalRequest.from_json(row["request"])
        repo = await self.store.repo_by_id(row["repo_id"])
        if repo is None:
            raise JobFailed("the repository was deleted while the evaluation was queued")
        entry = await self.store.file_blob(repo, row["source_commit"], row["source_path"])
        assert entry.blob_key is not None
        fmt = tables.table_format(row["source_path"])
        source = jobs.PromptSource(
            InputFile(str(self.store.blobs.path(entry.blob_key))),
            fmt,
            row["source_path"],
            req.prompt,
            req.sample_count if req.is_sample else None,
        )
        work = self.work_dir(job.id)
        try:
            try:
                if req.type == "embeddings":
                    done = await job.run_task(
                        jobs.embed_rows,
                        source,
                        str(work),
                        self.options.embed_chunk_rows,
                        self.options.embed_batch_size,
                    )
                else:
                    done, used = await self._generate(job, req, source, work)
                    await self.records.update(
                        job.id, prompt_tokens=used[0], completion_tokens=used[1]
                    )
            except (tables.TableError, PromptInvalid) as e:
                raise JobFailed(str(e)) from None
            results = await job.run_task(
                jobs.write_results,
                self.root,
                str(work),
                req.type,
                req.target_column,
                done,
                progress=False,
            )
            await self.records.update(job.id, results_blob=results)
            if req.is_sample or not req.auto_commit:
                await job.progress(done, done)
            else:
                await self._commit(job, row, req, source, done, repo)
        except (JobCancelled, asyncio.CancelledError):
            # A cancel or a shutdown: the parts stay for a requeued run (the start-up sweep
            # removes them once the job is over).
            raise
        except BaseException:
            await job.run_blocking(lambda ctx: shutil.rmtree(work, ignore_errors=True))
            raise
        await job.run_blocking(lambda ctx: shutil.rmtree(work, ignore_errors=True))

    async def _generate(
        self, job: Job, req: EvalRequest, source: jobs.PromptSource, work: Path
    ) -> tuple[int, tuple[int, int]]:
        """Generate the rows left, one step (``batch_size`` rows) at a time; the rows
        done and the (prompt, completion) tokens of all of them."""
        judge = self.ctx.engine("judge", Judge)
        limit = asyncio.Semaphore(max(1, self.options.concurrency))
        plan = await job.run_task(
            jobs.render_prompts, source, str(work), req.batch_size, progress=False
        )
        done, total = plan.done, plan.total
        usage = [plan.prompt_tokens, plan.completion_tokens]
        await job.progress(done, total)

        async def one(index: int, text: str) -> Any:
            async with limit:
                try:
                    return await judge.generate(
                        [{"role": "user", "content": text}], model=req.model
                    )
                except (EngineError, UnknownModel) as e:
                    raise JobFailed(
                        f"row {index} (0-based) could not be generated with model {req.model}:"
                        f" {e}; nothing was committed, fix the cause and submit again"
                    ) from None

        for part in plan.parts:
            batch = await job.run_task(jobs.read_prompts, part, progress=False)
            tasks = [asyncio.ensure_future(one(done + i, t)) for i, t in enumerate(batch)]
            try:
                gens = await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            step = (sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens))
            usage[0] += step[0]
            usage[1] += step[1]
            meta = {"prompt_tokens": str(step[0]), "completion_tokens": str(step[1])}
            texts = [g.text for g in gens]
            await job.run_task(jobs.write_text_part, str(work), done, texts, meta, progress=False)
            done += len(batch)
            await job.progress(done, total)
        return done, (usage[0], usage[1])

    async def _commit(
        self,
        job: Job,
        row: dict[str, Any],
        req: EvalRequest,
        source: jobs.PromptSource,
        done: int,
        repo: Repo,
    ) -> None:
        store = self.store
        source_branch = row["source_version"]
        branch = req.target_branch or source_branch
        target_path = req.target_path or row["source_path"]
        # The head this result is built on: the source commit when writing back to the
        # source branch; else the target branch's head now (created from the source).
        if branch == source_branch:
            base = row["source_commit"]
        else:
            created, _ = await store.create_branch(
                repo, branch, commit_id=row["source_commit"], exist_ok=True
            )
            base = created.commit_id
        # The column is added to the target path as it is at ``base`` (so a second
        # evaluation into the same branch keeps the first one's column), else the source.
        base_file, base_format = source.path, source.format
        try:
            entry = await store.file_blob(repo, base, target_path)
        except OxenStoreError:
            pass  # not on the target branch yet: the source with the column
        else:
            assert entry.blob_key is not None
            base_file = str(store.blobs.path(entry.blob_key))
            base_format = tables.table_format(target_path)
        step = jobs.WriteBack(
            data_dir=self.root,
            base=base_file,
            base_format=base_format,
            base_label=f"{target_path} at {base}",
            target_path=target_path,
            target_label=f"{target_path} on {branch}",
            column=req.target_column,
            overwrite=req.overwrite,
            work=str(self.work_dir(job.id)),
            kind=req.type,
            rows=done,
        )
        try:
            stored = await job.run_task(jobs.write_back, step, progress=False)
        except tables.TableError as e:
            raise JobFailed(str(e)) from None
        await self.records.update(job.id, commit_started_at=utcnow())
        try:
            commit = await store.commit_files(
                repo,
                branch,
                {target_path: stored.blob},
                self.options.commit_author,
                self.options.commit_email,
                req.commit_message,
                expected_parent=base,
                types={target_path: stored.type},
            )
        except CommitConflict as e:
            await self.records.update(job.id, conflict_target_branch=branch)
            raise JobFailed(str(e)) from None
        except OxenStoreError as e:
            raise JobFailed(str(e)) from None
        async with self.db.transaction() as tx:
            await self.records.update(job.id, tx, closing_commit=json.dumps(commit.to_json()))
            await job.progress(done, done, conn=tx)


def _resolve_generator(judge: Any, model: str) -> str:
    """The served model a vendor name routes to, without generating anything.

    Uses the judge's routing table when it has one (openai and similarity judges);
    the mock judge answers for its known names. Raises UnknownModel/EngineUnavailable.
    """
    routes = getattr(judge, "routes", None)
    if routes is not None:
        _, served = routes.resolve(model)
        return str(served)
    known = judge.known_models()
    if model not in known:
        raise UnknownModel(model, known)
    return model
