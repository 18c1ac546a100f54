"""Handlers of openapi/oxen.yaml, one method per operationId: parse, ask the backend
(:mod:`.backend`: the rules, the store, the evaluation job), render in Oxen's envelope.
Nothing here reads a file: pages of rows, uploads and blob puts run in worker processes
(:mod:`.jobs`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from ..jsonio import JSONResponse
from ..spec import Operation
from ..surface import ApiRequest, Provider
from . import tables
from .backend import OxenBackend
from .errors import OxenErrors, OxenStoreError, bad_request, from_store
from .evaluations import render
from .prompts import PromptInvalid
from .settings import OxenSettings
from .store import Repo, Revision, page_bounds
from .uploads import UploadInvalid

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
    backend: OxenBackend

    def max_body_bytes(self, operation: Operation) -> int:
        if operation.operation_id == "upload_files":
            return self.options.max_upload_bytes
        return super().max_body_bytes(operation)

    # -- helpers ---------------------------------------------------------------------------

    async def _repo(self, req: ApiRequest) -> Repo:
        return await self.backend.repo(req.tenant, req.path["namespace"], req.path["repo_name"])

    async def _repo_json(self, repo: Repo) -> dict[str, Any]:
        latest = await self.backend.latest_commit(repo)
        return {
            "namespace": repo.namespace,
            "name": repo.name,
            "min_version": None,
            "is_empty": latest is None,
            "storage_kind": "local",
            "latest_commit": latest.to_json() if latest else None,
        }

    async def _resource(self, req: ApiRequest, repo: Repo) -> Revision:
        return await self.backend.resource(repo, req.path["resource"])

    @staticmethod
    def _paging(req: ApiRequest) -> tuple[int, int]:
        return page_bounds(
            int(req.query.get("page") or 1), int(req.query.get("page_size") or _DEFAULT_PAGE_SIZE)
        )

    # -- repositories ----------------------------------------------------------------------

    @oxen_errors
    async def create_repo(self, req: ApiRequest) -> Response:
        body = req.body
        files = []
        author, email = "", ""
        for f in body.get("files") or []:
            files.append((f["path"], f["contents"]))
            user = f.get("user") or {}
            author = author or str(user.get("name") or "")
            email = email or str(user.get("email") or "")
        repo = await self.backend.create_repo(
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
        await self.backend.delete_repo(req.tenant, repo.namespace, repo.name)
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
        branches = await self.backend.branches(repo)
        return ok(branches=[b.to_json() for b in branches])

    @oxen_errors
    async def create_branch(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        body = req.body
        branch, created = await self.backend.create_branch(
            repo, body["new_name"], body.get("from_name"), body.get("commit_id")
        )
        return ok("resource_created" if created else "resource_found", branch=branch.to_json())

    @oxen_errors
    async def get_branch(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        branch = await self.backend.branch(repo, req.path["branch"])
        return ok(branch=branch.to_json())

    @oxen_errors
    async def delete_branch(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        branch = await self.backend.delete_branch(repo, req.path["branch"])
        return ok("resource_deleted", branch=branch.to_json())

    # -- files ---------------------------------------------------------------------------

    @oxen_errors
    async def get_file(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        path, file_type = await self.backend.file(repo, revision)
        return FileResponse(path, media_type=file_type.mime_type)

    @oxen_errors
    async def download_zip(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        path = await self.backend.zip_folder(repo, revision)
        # Streamed from disk, then removed.
        return FileResponse(
            path, media_type="application/zip", background=BackgroundTask(_remove, path)
        )

    # -- Merkle tree transport: RemoteRepo.download of a folder ---------------------------

    @oxen_errors
    async def tree_download(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        raw = req.query.get("subtrees") or ""
        subtrees = raw.split(",") if raw else []
        depth = req.query.get("depth")
        path = await self.backend.tree_download(
            repo, req.path["commit_id"], subtrees, -1 if depth is None else int(depth)
        )
        # Streamed from disk, then removed.
        return FileResponse(
            path, media_type="application/gzip", background=BackgroundTask(_remove, path)
        )

    @oxen_errors
    async def node_hash(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        return ok(hash=await self.backend.node_hash(repo, revision))

    @oxen_errors
    async def query_versions(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        path = await self.backend.versions(repo, req.body_file)
        return FileResponse(
            path, media_type="application/gzip", background=BackgroundTask(_remove, path)
        )

    @oxen_errors
    async def get_chunk(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        start, size = int(req.query["chunk_start"]), int(req.query["chunk_size"])
        path = await self.backend.chunk(repo, revision, start, size)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            background=BackgroundTask(_remove, path),
        )

    @oxen_errors
    async def upload_files(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        commit = await self.backend.upload(
            repo,
            req.path["resource"],
            req.body_file,
            req.request.headers.get("content-type", ""),
        )
        return ok("resource_created", commit=commit.to_json())

    @oxen_errors
    async def get_metadata(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        entry = await self.backend.entry(repo, revision)
        return ok(entry=entry.metadata_entry(revision))

    @oxen_errors
    async def list_dir(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        revision = await self._resource(req, repo)
        page, size = self._paging(req)
        listing = await self.backend.list_dir(repo, revision, page, size)
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
        history = await self.backend.history(repo, revision, page, size)
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
        page, size = self._paging(req)
        found = await self.backend.data_frame(repo, revision, page, size)
        info = found.info
        return ok(
            data_frame={
                "schema": {
                    "fields": [
                        {"name": n, "dtype": t}
                        for n, t in zip(info.columns, info.dtypes, strict=True)
                    ]
                },
                "view": {
                    "data": found.rows,
                    "size": {"height": info.num_rows, "width": len(info.columns)},
                    "pagination": _pagination(page, size, info.num_rows),
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
        eval_id = await self.backend.create_evaluation(req.tenant, repo, revision, req.body)
        return await self._evaluation_response(eval_id, req, repo)

    async def _evaluation_response(self, eval_id: str, req: ApiRequest, repo: Repo) -> Response:
        row, job = await self.backend.evaluation(req.tenant, repo, eval_id)
        return ok(evaluation=render(row, job, repo.namespace))

    @oxen_errors
    async def get_evaluation(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        return await self._evaluation_response(req.path["evaluation_id"], req, repo)

    @oxen_errors
    async def list_evaluations(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        page, size = self._paging(req)
        found, total = await self.backend.evaluations(repo, page, size)
        out = [render(row, job, repo.namespace) for row, job in found]
        return ok("resource_found", evaluations=out, **_pagination(page, size, total))

    @oxen_errors
    async def cancel_evaluation(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        eval_id = req.path["evaluation_id"]
        await self.backend.cancel_evaluation(req.tenant, repo, eval_id)
        return await self._evaluation_response(eval_id, req, repo)

    @oxen_errors
    async def get_evaluation_results(self, req: ApiRequest) -> Response:
        repo = await self._repo(req)
        eval_id = req.path["evaluation_id"]
        accept = req.accept or ""
        if "text/csv" in accept:
            path = await self.backend.results_csv(req.tenant, repo, eval_id)
            # Streamed from disk, then removed.
            return FileResponse(
                path, media_type="text/csv", background=BackgroundTask(_remove, path)
            )
        page, size = self._paging(req)
        found = await self.backend.results_page(req.tenant, repo, eval_id, page, size)
        offset = (page - 1) * size
        results = [{"row": offset + i, **r} for i, r in enumerate(found.rows)]
        return JSONResponse(
            {
                "status": "success",
                "status_message": "resource_found",
                "results": results,
                **_pagination(page, size, found.info.num_rows),
            }
        )


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _pagination(page: int, size: int, total: int) -> dict[str, int]:
    return {
        "page_size": size,
        "page_number": page,
        "total_pages": math.ceil(total / size) if size else 0,
        "total_entries": total,
    }
