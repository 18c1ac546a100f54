"""Handlers of openapi/oxen.yaml, one method per operationId: parse, ask the store,
render in Oxen's envelope. The repository rules live in :mod:`.store`, file bytes in
:mod:`.blobs`, tables in :mod:`.tables`; the evaluation job in :mod:`.evaluation_job`."""

from __future__ import annotations

import asyncio
import base64
import csv
import functools
import io
import math
import shutil
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

from starlette.responses import FileResponse, Response

from evaldock.engines.errors import EngineUnavailable
from evaldock.engines.judge.base import UnknownModel

from ..jobs import Job
from ..jsonio import JSONResponse
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import evaluation_job, tables
from .blobs import BlobNotFound
from .errors import (
    OxenApiError,
    OxenErrors,
    OxenStoreError,
    bad_request,
    from_store,
    not_found,
)
from .evaluations import (
    EVALUATION_JOB,
    EvalRequest,
    EvaluationRecords,
    Source,
    parse_request,
    render,
)
from .paths import check_branch_name, clean_path, join
from .prompts import PromptInvalid, compile_prompt
from .settings import OxenSettings
from .store import DEFAULT_BRANCH, OxenStore, Repo, Revision, page_bounds
from .uploads import UploadInvalid, parse_upload

F = TypeVar("F", bound=Callable[..., Awaitable[Response]])

# Rows of a data_frames page or results page: the spec bounds page_size at 10,000.
_DEFAULT_PAGE_SIZE = 100


def oxen_errors(handler: F) -> F:
    """Backend errors as Oxen's envelope: store errors carry their status; table, prompt
    and upload errors are the caller's (400)."""

    @functools.wraps(handler)
    async def wrapped(*args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(*args, **kwargs)
        except OxenStoreError as e:
            raise from_store(e) from None
        except (tables.TableError, PromptInvalid, UploadInvalid) as e:
            raise bad_request(str(e)) from None

    return wrapped  # type: ignore[return-value]


def ok(status_message: str = "resource_found", **fields: Any) -> Response:
    return JSONResponse({"status": "success", "status_message": status_message, **fields})


class OxenProvider(Provider):
    errors: ClassVar[OxenErrors] = OxenErrors()
    options: OxenSettings

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.store = OxenStore(self.db, self.settings.data_dir)
        self.records = EvaluationRecords(self.db)

    def max_body_bytes(self, operation: Operation) -> int:
        if operation.operation_id == "upload_files":
            return self.options.max_upload_bytes
        return super().max_body_bytes(operation)

    async def startup(self) -> None:
        await self._sweep_work()

    async def _sweep_work(self) -> None:
        """Remove the results parts of evaluations that are over (a cancelled or killed
        run leaves its parts for a requeue; once the job is done nobody reads them)."""
        root = evaluation_job.work_dir(self, "x").parent
        if not root.is_dir():
            return
        live = await self.db.fetchall(
            "SELECT id FROM job_view WHERE status IN ('queued', 'running', 'waiting')"
        )
        keep = {r["id"] for r in live}
        for folder in root.iterdir():
            if folder.name not in keep:
                await asyncio.to_thread(shutil.rmtree, folder, True)

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
        await self.store.collect_blobs(min_age_s=0.0 if tenant is None else 3600.0)

    async def run_evaluation(self, job: Job) -> None:
        await evaluation_job.run_evaluation(self, job)

    # -- helpers ---------------------------------------------------------------------------

    async def _repo(self, req: ApiRequest) -> Repo:
        return await self.store.get_repo(req.tenant, req.path["namespace"], req.path["repo_name"])

    async def _repo_json(self, repo: Repo) -> dict[str, Any]:
        latest = await self.store.latest_commit(repo)
        return {
            "namespace": repo.namespace,
            "name": repo.name,
            "min_version": None,
            "is_empty": latest is None,
            "storage_kind": "local",
            "latest_commit": latest.to_json() if latest else None,
        }

    async def _resource(self, req: ApiRequest, repo: Repo) -> Revision:
        return await self.store.resolve_resource(repo, req.path["resource"])

    @staticmethod
    def _paging(req: ApiRequest) -> tuple[int, int]:
        return page_bounds(
            int(req.query.get("page") or 1), int(req.query.get("page_size") or _DEFAULT_PAGE_SIZE)
        )

    # -- repositories ----------------------------------------------------------------------

    @oxen_errors
    async def create_repo(self, req: ApiRequest) -> Response:
        body = req.body
        files = {}
        author, email = "", ""
        for f in body.get("files") or []:
            path = clean_path(f["path"])
            data = f["contents"].encode("utf-8")
            files[path] = await asyncio.to_thread(self.store.blobs.put_bytes, data)
            user = f.get("user") or {}
            author = author or str(user.get("name") or "")
            email = email or str(user.get("email") or "")
        repo, _ = await self.store.create_repo(
            req.tenant, body["namespace"], body["name"], files, author, email
        )
        return ok("resource_created", repository=await self._repo_json(repo))

    @oxen_errors
    async def get_repo(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        return ok(repository=await self._repo_json(repo))

    @oxen_errors
    async def delete_repo(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        await self.store.delete_repo(req.tenant, repo.namespace, repo.name)
        return ok("resource_deleted")

    @oxen_errors
    async def get_revision(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        return ok(resource=revision.resource_json())

    # -- branches ------------------------------------------------------------------------

    @oxen_errors
    async def list_branches(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        branches = await self.store.list_branches(repo)
        return ok(branches=[b.to_json() for b in branches])

    @oxen_errors
    async def create_branch(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        body = req.body
        # oxen-server answers an existing name with that branch (resource_found).
        branch, created = await self.store.create_branch(
            repo,
            body["new_name"],
            from_name=body.get("from_name"),
            commit_id=body.get("commit_id"),
            exist_ok=True,
        )
        return ok("resource_created" if created else "resource_found", branch=branch.to_json())

    @oxen_errors
    async def get_branch(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        branch = await self.store.get_branch(repo, req.path["branch"])
        return ok(branch=branch.to_json())

    @oxen_errors
    async def delete_branch(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        branch = await self.store.delete_branch(repo, req.path["branch"])
        return ok("resource_deleted", branch=branch.to_json())

    # -- files ---------------------------------------------------------------------------

    @oxen_errors
    async def get_file(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        path = self.store.blobs.path(entry.blob_key)
        if not path.is_file():
            raise BlobNotFound(entry.blob_key)
        return FileResponse(path, media_type=entry.file_type.mime_type)

    @oxen_errors
    async def upload_files(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        branch, folder = await self._upload_target(repo, req.path["resource"])
        if req.body_file is None:
            raise bad_request("send the files as multipart/form-data (files[], name, email)")
        upload = await asyncio.to_thread(
            parse_upload,
            req.body_file,
            req.request.headers.get("content-type", ""),
            self.store.blobs,
        )
        if not upload.files:
            raise bad_request("no file parts: send each file as a 'files[]' part with a filename")
        files = {join(folder, name): blob for name, blob in upload.files}
        commit = await self.store.commit_files(
            repo,
            branch,
            files,
            upload.fields.get("name", ""),
            upload.fields.get("email", ""),
            upload.fields.get("message") or "Upload files",
        )
        return ok("resource_created", commit=commit.to_json())

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

    @oxen_errors
    async def get_metadata(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        entry = await self.store.entry(repo, revision, revision.path)
        return ok(entry=entry.metadata_entry(revision))

    @oxen_errors
    async def list_dir(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        page, size = self._paging(req)
        listing = await self.store.list_dir(repo, revision, revision.path, page, size)
        entries = listing.entries
        return ok(
            dir=listing.dir.metadata_entry(revision),
            entries=[e.metadata_entry(revision) for e in entries.items],
            resource=revision.resource_json(),
            metadata=None,
            page_size=entries.page_size,
            page_number=entries.page_number,
            total_pages=entries.total_pages,
            total_entries=entries.total_entries,
        )

    @oxen_errors
    async def commit_history(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        page, size = self._paging(req)
        history = await self.store.history(repo, revision.commit.id, page, size)
        return ok(
            commits=[c.to_json() for c in history.items],
            page_size=history.page_size,
            page_number=history.page_number,
            total_pages=history.total_pages,
            total_entries=history.total_entries,
        )

    @oxen_errors
    async def get_data_frame(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        fmt = tables.table_format(revision.path)
        page, size = self._paging(req)
        blob = self.store.blobs.path(entry.blob_key)
        table, rows = await asyncio.to_thread(_page_rows, blob, fmt, page, size)
        return ok(
            data_frame={
                "schema": {
                    "fields": [{"name": f.name, "dtype": str(f.type)} for f in table.schema]
                },
                "view": {
                    "data": rows,
                    "size": {"height": table.num_rows, "width": len(table.columns)},
                    "pagination": _pagination(page, size, table.num_rows),
                },
            },
            resource=revision.resource_json(),
        )

    async def action_hook(self, req: ApiRequest) -> Response:
        # The client announces downloads/uploads; nothing to record here.
        await self._repo_or_404(req)
        return ok()

    async def _repo_or_404(self, req: ApiRequest) -> Repo:
        try:
            return await self._repo(req)
        except OxenStoreError as e:
            raise from_store(e) from None

    # -- evaluations ----------------------------------------------------------------------

    @oxen_errors
    async def create_evaluation(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        if not revision.path:
            raise bad_request(
                "name a file after the branch: .../evaluations/<branch>/<path/to/data.parquet>"
            )
        entry = await self.store.file_blob(repo, revision, revision.path)
        assert entry.blob_key is not None
        request = parse_request(req.body, self.options)
        model_ran, signature = self._check_model(request)
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
        table = await asyncio.to_thread(tables.read_table, blob, fmt)
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
                tx, eval_id, req.tenant, repo.id, request, source, model_ran, signature
            )
            await self.runner.submit(tx, eval_id, EVALUATION_JOB, req.tenant, total)
        return await self._evaluation_response(eval_id, req, repo)

    def _check_model(self, request: EvalRequest) -> tuple[str, str]:
        """(the model that will really run, its engine signature), or a 400 listing the
        known models; a text model without a served generator names EVALDOCK_JUDGE_URLS."""
        embedder = self.ctx.engine("embedder")
        judge = self.ctx.engine("judge")
        embedding_names = [*self.options.embedding_models, embedder.model]
        text_names = judge.known_models()
        known = (
            f"text models: {', '.join(text_names) or 'none'}; embedding models:"
            f" {', '.join(dict.fromkeys(embedding_names))}"
        )
        if request.type == "embeddings":
            if request.model not in embedding_names:
                raise bad_request(
                    f"model {request.model!r} is not an embedding model here ({known});"
                    " map more names in [oxen] embedding_models"
                )
            return embedder.model, embedder.signature
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
        return served, str(judge.signature)

    async def _evaluation_response(self, eval_id: str, req: ApiRequest, repo: Repo) -> Response:
        row = await self.records.get(eval_id, req.tenant)
        if row is None or row["repo_id"] != repo.id:
            raise not_found(f"evaluation {eval_id} not found in {repo.namespace}/{repo.name}")
        job = await self.runner.view(eval_id)
        return ok(evaluation=render(row, job, repo.namespace))

    @oxen_errors
    async def get_evaluation(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        return await self._evaluation_response(req.path["evaluation_id"], req, repo)

    @oxen_errors
    async def list_evaluations(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        page, size = self._paging(req)
        rows, total = await self.records.for_repo(repo.id, page, size)
        out = [render(r, await self.runner.view(r["id"]), repo.namespace) for r in rows]
        return ok("resource_found", evaluations=out, **_pagination(page, size, total))

    @oxen_errors
    async def cancel_evaluation(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        eval_id = req.path["evaluation_id"]
        await self._evaluation_response(eval_id, req, repo)  # 404 unless it is ours
        await self.runner.cancel(eval_id)
        return await self._evaluation_response(eval_id, req, repo)

    @oxen_errors
    async def get_evaluation_results(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        eval_id = req.path["evaluation_id"]
        row = await self.records.get(eval_id, req.tenant)
        if row is None or row["repo_id"] != repo.id:
            raise not_found(f"evaluation {eval_id} not found in {repo.namespace}/{repo.name}")
        if not row["results_blob"]:
            job = await self.runner.view(eval_id)
            state = job.status if job else "unknown"
            raise OxenApiError(
                409,
                f"evaluation {eval_id} has no results yet (status {state}); poll"
                " GET .../evaluations/<id> until it is completed",
                "conflict",
            )
        blob = self.store.blobs.path(row["results_blob"])
        accept = req.accept or ""
        if "text/csv" in accept:
            text = await asyncio.to_thread(_results_csv, blob)
            return Response(text, media_type="text/csv")
        page, size = self._paging(req)
        table, rows = await asyncio.to_thread(_page_rows, blob, "parquet", page, size)
        offset = (page - 1) * size
        results = [{"row": offset + i, **r} for i, r in enumerate(rows)]
        return JSONResponse(
            {
                "status": "success",
                "status_message": "resource_found",
                "results": results,
                **_pagination(page, size, table.num_rows),
            }
        )


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


def _field(f: Any) -> dict[str, str]:
    return {"name": f.name, "dtype": str(f.type)}


def _pagination(page: int, size: int, total: int) -> dict[str, int]:
    return {
        "page_size": size,
        "page_number": page,
        "total_pages": math.ceil(total / size) if size else 0,
        "total_entries": total,
    }


def _page_rows(
    path: Any, fmt: str, page: int, size: int
) -> tuple[tables.Table, list[dict[str, Any]]]:
    table = tables.read_table(path, fmt)
    skip = (page - 1) * size
    if skip >= table.num_rows:
        return table, []
    # Batches of page size: the wanted page is one whole batch, earlier ones are skipped.
    for i, batch in enumerate(tables.iter_batches(table, list(table.columns), size)):
        if i == page - 1:
            n = len(next(iter(batch.values()))) if batch else 0
            return table, [{c: _json_safe(batch[c][r]) for c in table.columns} for r in range(n)]
    return table, []


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def _results_csv(path: Any) -> str:
    table = tables.read_table(path, "parquet")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["row", *table.columns])
    row = 0
    for batch in tables.iter_batches(table, list(table.columns)):
        n = len(next(iter(batch.values()))) if batch else 0
        for r in range(n):
            w.writerow([row, *(tables.cell_text(batch[c][r]) for c in table.columns)])
            row += 1
    return out.getvalue()
