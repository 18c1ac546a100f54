"""The Oxen surface through the app (in-process; also over HTTP with EVALDOCK_TEST_SERVER=1):
envelopes, repositories, uploads, evaluations and their failure modes."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

AUTH = {"Authorization": "Bearer test"}
R = "/api/repos/ox/data"


def parquet_bytes(**columns: list[Any]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def upload(client: Any, name: str, data: bytes, branch_dir: str = "main/", **fields: str) -> Any:
    form = {"name": "Ox", "email": "ox@x", "message": f"add {name}", **fields}
    return client.put(
        f"{R}/file/{branch_dir}", files=[("files[]", (name, data))], data=form, headers=AUTH
    )


def make_repo(client: Any, *, files: bool = True) -> None:
    body: dict[str, Any] = {"namespace": "ox", "name": "data"}
    if files:
        body["files"] = [{"path": "README.md", "contents": "# data\n", "user": {"name": "Ox"}}]
    r = client.post("/api/repos", json=body, headers=AUTH)
    assert r.status_code == 200, r.text


def evaluate(client: Any, resource: str = "main/data.parquet", **body: Any) -> Any:
    payload = {
        "name": "e",
        "prompt": "Classify: {text}",
        "type": "text",
        "model": "gpt-4o-mini",
        "target_column": "pred",
        **body,
    }
    return client.post(f"{R}/evaluations/{resource}", json=payload, headers=AUTH)


def finished(client: Any, eval_id: str) -> dict[str, Any]:
    for _ in range(400):
        e = client.get(f"{R}/evaluations/{eval_id}", headers=AUTH).json()["evaluation"]
        if e["status"] in ("completed", "failed", "cancelled"):
            return e
        time.sleep(0.05)
    raise AssertionError(f"evaluation {eval_id} did not finish")


def read_parquet(client: Any, resource: str) -> pa.Table:
    r = client.get(f"{R}/file/{resource}", headers=AUTH)
    assert r.status_code == 200, r.text
    return pq.read_table(io.BytesIO(r.content))


@pytest.fixture
def repo(client: Any) -> Any:
    make_repo(client)
    data = parquet_bytes(text=["good movie", "bad film", "fine"], n=[1, 2, 3])
    assert upload(client, "data.parquet", data).status_code == 200
    return client


# -- envelope, auth, tenancy -----------------------------------------------------------


def test_unauthorized_and_missing(client: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = client.get(f"{R}", headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert (body["status"], body["status_message"]) == ("error", "unauthenticated")
        assert body["oxen_version"]
    r = client.get(R, headers=AUTH)
    assert r.status_code == 404
    assert r.json()["status_message"] == "resource_not_found"
    assert set(r.json()) >= {"status", "status_message", "status_description", "oxen_version"}


def test_create_conflict_and_repository_shape(client: Any) -> None:
    make_repo(client)
    r = client.post("/api/repos", json={"namespace": "ox", "name": "data"}, headers=AUTH)
    assert r.status_code == 409
    assert r.json()["status_message"] == "resource_already_exists"
    repo = client.get(R, headers=AUTH).json()["repository"]
    assert repo["storage_kind"] == "local" and repo["min_version"] is None
    assert repo["is_empty"] is False


def test_upload_trailing_slash_and_history(repo: Any) -> None:
    r = repo.get(f"{R}/commits/history/main", headers=AUTH).json()
    assert [c["message"] for c in r["commits"]] == ["add data.parquet", "Initial commit"]
    listing = repo.get(f"{R}/dir/main/", headers=AUTH).json()
    assert [e["filename"] for e in listing["entries"]] == ["README.md", "data.parquet"]
    assert listing["total_entries"] == 2
    meta = repo.get(f"{R}/meta/main/data.parquet", headers=AUTH).json()["entry"]
    assert len(meta) == 11 and meta["data_type"] == "tabular"


def test_upload_into_folder_and_old_revision_reads_old_bytes(repo: Any) -> None:
    first = upload(repo, "a.txt", b"one", "main/docs").json()["commit"]["id"]
    upload(repo, "a.txt", b"two", "main/docs")
    assert repo.get(f"{R}/file/main/docs/a.txt", headers=AUTH).content == b"two"
    assert repo.get(f"{R}/file/{first}/docs/a.txt", headers=AUTH).content == b"one"


def test_upload_needs_a_multipart_file(repo: Any) -> None:
    r = repo.put(f"{R}/file/main/", files={"name": (None, "x")}, headers=AUTH)
    assert r.status_code == 400
    assert "files[]" in r.json()["status_description"]
    r = repo.put(f"{R}/file/main/", data={"name": "x"}, headers=AUTH)
    assert r.status_code == 415


@pytest.mark.parametrize(
    "path", ["main/../x", "main/%2e%2e/x", "main/%252e%252e/x", "main/.oxen/config"]
)
def test_path_traversal_is_a_400(repo: Any, path: str) -> None:
    r = repo.get(f"{R}/file/{path}", headers=AUTH)
    assert r.status_code in (400, 404), r.text
    assert r.json()["status"] == "error"


def test_other_token_is_another_tenant(repo: Any, client: Any) -> None:
    # An unknown token is a 401 whatever the repository.
    r = repo.get(R, headers={"Authorization": "Bearer other"})
    assert r.status_code == 401


def test_each_configured_token_is_a_tenant(make_client: Any) -> None:
    client = make_client(**{"auth.oxen.keys": ["test", "other"]})
    other = {"Authorization": "Bearer other"}
    make_repo(client)
    assert upload(client, "data.parquet", parquet_bytes(text=["a", "b"])).status_code == 200
    eval_id = evaluate(client, is_sample=True).json()["evaluation"]["id"]
    # The other token does not see test's repository, file, branch or evaluation ...
    assert client.get(R, headers=other).status_code == 404
    assert client.get(f"{R}/file/main/data.parquet", headers=other).status_code == 404
    assert client.get(f"{R}/branches/main", headers=other).status_code == 404
    assert client.get(f"{R}/evaluations/{eval_id}", headers=other).status_code == 404
    r = client.post(f"{R}/evaluations/{eval_id}/cancel", headers=other)
    assert r.status_code == 404
    # ... and the same ns/repo under it is a second, separate repository.
    r = client.post("/api/repos", json={"namespace": "ox", "name": "data"}, headers=other)
    assert r.status_code == 200, r.text
    assert client.get(f"{R}/file/main/data.parquet", headers=other).status_code == 404
    assert client.get(f"{R}/evaluations", headers=other).json()["evaluations"] == []
    assert client.delete(R, headers=other).status_code == 200
    # test's repository is untouched by the other tenant's delete.
    assert client.get(f"{R}/file/main/data.parquet", headers=AUTH).status_code == 200
    assert finished(client, eval_id)["status"] == "completed"


def test_branches(repo: Any) -> None:
    r = repo.post(
        f"{R}/branches", content=b'{"new_name": "dev", "from_name": "main"}', headers=AUTH
    )
    assert r.status_code == 200, r.text
    head = repo.get(f"{R}/branches/main", headers=AUTH).json()["branch"]["commit_id"]
    assert r.json()["branch"] == {"name": "dev", "commit_id": head}
    names = [b["name"] for b in repo.get(f"{R}/branches", headers=AUTH).json()["branches"]]
    assert names == ["dev", "main"]
    assert repo.delete(f"{R}/branches/dev", headers=AUTH).status_code == 200
    assert repo.get(f"{R}/branches/dev", headers=AUTH).status_code == 404


def test_action_hooks_without_body_or_content_type(repo: Any) -> None:
    r = repo.post(f"{R}/action/completed/download", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "success"


def test_workspaces_and_clone_routes_are_501(repo: Any) -> None:
    for method, path in (("PUT", "/workspaces"), ("GET", "/versions/abc"), ("POST", "/tree/x")):
        r = repo.request(method, f"{R}{path}", headers=AUTH)
        assert r.status_code == 501, (path, r.text)
        assert r.json()["status_message"] == "not_implemented"
        assert "RemoteRepo.upload" in r.json()["status_description"]


def _tar(content: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_folder_download_transport(repo: Any) -> None:
    """What RemoteRepo.download("<folder>") sends (oxenai 0.65.1): the folder's latest
    commit from meta, its tree nodes, the folder node's hash, then the files by hash."""
    files = {"a.txt": b"alpha\n", "sub/b.csv": b"x,y\n1,2\n", "sub/deep/c.bin": bytes(range(256))}
    for path, data in files.items():
        folder, _, name = f"d/{path}".rpartition("/")
        assert upload(repo, name, data, branch_dir=f"main/{folder}").status_code == 200
    commit = repo.get(f"{R}/meta/main/d", headers=AUTH).json()["entry"]["latest_commit"]["id"]
    r = repo.get(f"{R}/tree/download/{commit}?depth=-1&is_download=true&subtrees=d", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/gzip"
    nodes = _tar(r.content)
    # d, sub, deep: a dir node and a vnode each, node and children files.
    assert len(nodes) == 12 and all(n.startswith("tree/nodes/") for n in nodes)
    r = repo.get(f"{R}/tree/nodes/resource/{commit}/d", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    h = r.json()["hash"]
    assert f"tree/nodes/{h[:3]}/{h[3:]}/node" in nodes
    # Depth 0: the folder and its vnode only.
    r = repo.get(f"{R}/tree/download/{commit}?depth=0&subtrees=d", headers=AUTH)
    assert len(_tar(r.content)) == 4
    # A file's node hash is its content hash, which QUERY .../versions takes.
    hashes = [
        repo.get(f"{R}/tree/nodes/resource/{commit}/d/{p}", headers=AUTH).json()["hash"]
        for p in files
    ]
    assert hashes == [
        repo.get(f"{R}/meta/main/d/{p}", headers=AUTH).json()["entry"]["hash"] for p in files
    ]
    body = gzip.compress("".join(f"{x}\n" for x in reversed(hashes)).encode())
    r = repo.request("QUERY", f"{R}/versions", content=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert list(_tar(r.content).items()) == list(
        zip(reversed(hashes), reversed(list(files.values())), strict=True)
    )
    # Files over the client's 10 MiB segment come in ranges.
    c_bin = f"{R}/chunk/{commit}/d/sub/deep/c.bin"
    r = repo.get(f"{c_bin}?chunk_start=200&chunk_size=100", headers=AUTH)
    assert r.status_code == 200 and r.content == bytes(range(200, 256)), r.text


def test_folder_download_refusals(repo: Any) -> None:
    r = repo.get(f"{R}/tree/download/main?subtrees=nope", headers=AUTH)
    assert r.status_code == 404 and r.json()["status_message"] == "resource_not_found", r.text
    r = repo.get(f"{R}/tree/download/nosuchcommit", headers=AUTH)
    assert r.status_code == 404, r.text
    r = repo.get(f"{R}/tree/download/main?subtrees=../x", headers=AUTH)
    assert r.status_code == 400 and r.json()["status"] == "error", r.text
    # A hash no commit of this repository holds; a body that is not gzip; not hex.
    body = gzip.compress(b"abc123\n")
    r = repo.request("QUERY", f"{R}/versions", content=body, headers=AUTH)
    assert r.status_code == 404 and "abc123" in r.json()["status_description"], r.text
    r = repo.request("QUERY", f"{R}/versions", content=b"plain", headers=AUTH)
    assert r.status_code == 400 and "gzip" in r.json()["status_description"], r.text
    r = repo.request("QUERY", f"{R}/versions", content=gzip.compress(b"<script>\n"), headers=AUTH)
    assert r.status_code == 400 and "content hash" in r.json()["status_description"], r.text
    r = repo.get(f"{R}/chunk/main/data.parquet?chunk_start=999999&chunk_size=1", headers=AUTH)
    assert r.status_code == 400 and "past the end" in r.json()["status_description"], r.text
    r = repo.get(f"{R}/chunk/main/data.parquet?chunk_start=0", headers=AUTH)
    assert r.status_code == 400, r.text


def test_versions_are_per_repository(repo: Any) -> None:
    # A hash of one repository's file does not reach it through another repository.
    h = repo.get(f"{R}/meta/main/data.parquet", headers=AUTH).json()["entry"]["hash"]
    body = gzip.compress(f"{h}\n".encode())
    assert repo.request("QUERY", f"{R}/versions", content=body, headers=AUTH).status_code == 200
    r = repo.post("/api/repos", json={"namespace": "ox", "name": "other"}, headers=AUTH)
    assert r.status_code == 200, r.text
    r = repo.request("QUERY", "/api/repos/ox/other/versions", content=body, headers=AUTH)
    assert r.status_code == 404 and h in r.json()["status_description"], r.text


def test_download_zip_of_a_nested_folder(repo: Any) -> None:
    files = {"a.txt": b"alpha\n", "sub/b.csv": b"x,y\n1,2\n", "sub/deep/c.bin": bytes(range(256))}
    for path, data in files.items():
        folder, _, name = f"d/{path}".rpartition("/")
        assert upload(repo, name, data, branch_dir=f"main/{folder}").status_code == 200
    assert upload(repo, "outside.txt", b"no", branch_dir="main/e").status_code == 200
    r = repo.get(f"{R}/export/download/main/d", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.namelist() == sorted(files)
        assert {n: zf.read(n) for n in zf.namelist()} == files
    # The whole repository under the revision alone; a file, a missing folder.
    r = repo.get(f"{R}/export/download/main", headers=AUTH)
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert "d/sub/deep/c.bin" in zf.namelist() and "e/outside.txt" in zf.namelist()
    r = repo.get(f"{R}/export/download/main/d/a.txt", headers=AUTH)
    assert r.status_code == 400 and r.json()["status"] == "error", r.text
    r = repo.get(f"{R}/export/download/main/nope", headers=AUTH)
    assert r.status_code == 404 and r.json()["status_message"] == "resource_not_found", r.text


def test_data_frame_pages(repo: Any) -> None:
    r = repo.get(f"{R}/data_frames/main/data.parquet?page=2&page_size=2", headers=AUTH)
    view = r.json()["data_frame"]["view"]
    assert view["data"] == [{"text": "fine", "n": 3}]
    assert view["pagination"]["total_pages"] == 2


# -- evaluations -------------------------------------------------------------------------


SEED_FIELDS = {
    "closing_commit", "commit_id", "commit_started_at", "completed_at",
    "conflict_target_branch", "created_by", "credits_per_token", "error_message", "id",
    "inserted_at", "is_sample", "master_id", "model", "name", "parent_id", "progress",
    "prompt", "queued_at", "repository_id", "resource", "sample_count", "started_at",
    "status", "target_branch", "target_column", "target_path", "tokens_used", "type",
    "workspace_id",
}  # fmt: skip


def test_text_evaluation_into_another_branch(repo: Any) -> None:
    main_head = repo.get(f"{R}/branches/main", headers=AUTH).json()["branch"]["commit_id"]
    r = evaluate(repo, target_branch="results", commit_message="preds", auto_commit=True)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["status_message"]) == ("success", "resource_found")
    assert set(body["evaluation"]) >= SEED_FIELDS
    assert body["evaluation"]["resource"] == {"path": "data.parquet", "version": "main"}
    done = finished(repo, body["evaluation"]["id"])
    assert done["status"] == "completed" and done["progress"] == {"processed": 3, "total": 3}
    assert done["closing_commit"]["message"] == "preds"
    # Free text is described by generation's own signature, not the judge's prompt/schema.
    assert done["engine_signature"].startswith("generate:mock|"), done["engine_signature"]
    assert "prompt:" not in done["engine_signature"]
    table = read_parquet(repo, "results/data.parquet")
    assert table.column_names == ["text", "n", "pred"]
    assert table.column("n").type == pa.int64()
    assert repo.get(f"{R}/branches/main", headers=AUTH).json()["branch"]["commit_id"] == main_head
    listed = repo.get(f"{R}/evaluations", headers=AUTH).json()["evaluations"]
    assert [e["id"] for e in listed] == [done["id"]]


def test_sample_commits_nothing_and_results_are_readable(repo: Any) -> None:
    heads = repo.get(f"{R}/branches", headers=AUTH).json()["branches"]
    r = evaluate(repo, is_sample=True, sample_count=2, target_branch="s")
    done = finished(repo, r.json()["evaluation"]["id"])
    assert done["status"] == "completed" and done["closing_commit"] is None
    assert done["progress"]["total"] == 2
    assert repo.get(f"{R}/branches", headers=AUTH).json()["branches"] == heads
    results = repo.get(f"{R}/evaluations/{done['id']}/results", headers=AUTH).json()
    assert [r["row"] for r in results["results"]] == [0, 1]
    csv = repo.get(f"{R}/evaluations/{done['id']}/results", headers={**AUTH, "Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "row,pred"


def test_auto_commit_false_commits_nothing(repo: Any) -> None:
    heads = repo.get(f"{R}/branches", headers=AUTH).json()["branches"]
    done = finished(repo, evaluate(repo, auto_commit=False).json()["evaluation"]["id"])
    assert done["status"] == "completed" and done["closing_commit"] is None
    assert repo.get(f"{R}/branches", headers=AUTH).json()["branches"] == heads


def test_embeddings_into_the_same_branch(repo: Any) -> None:
    r = evaluate(repo, type="embeddings", model="text-embedding-3-large", prompt="{text}")
    done = finished(repo, r.json()["evaluation"]["id"])
    assert done["status"] == "completed", done
    assert done["model_ran"] == "evaldock-mock-embedder"
    table = read_parquet(repo, "main/data.parquet")
    assert table.schema.field("pred").type == pa.list_(pa.float32())


def test_csv_source_keeps_cells_and_v2_body(client: Any) -> None:
    make_repo(client)
    upload(client, "d.csv", b'text,code\nhello,007\n"a, b",010\n')
    r = evaluate(
        client,
        "main/d.csv",
        input_type="text",
        output_type="text",
        model_id="gpt-4o",
        model=None,
        auto_commit=True,
        batch_size=1,
    )
    assert r.status_code == 200, r.text
    done = finished(client, r.json()["evaluation"]["id"])
    assert done["status"] == "completed", done
    assert {"cancelled_at", "prompt_tokens_used", "completion_tokens_used"} <= set(done)
    text = client.get(f"{R}/file/main/d.csv", headers=AUTH).text
    lines = text.splitlines()
    assert lines[0] == "text,code,pred"
    assert lines[1].startswith("hello,007,mock answer")
    assert lines[2].startswith('"a, b",010,')


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": "{nope}"}, "{nope}"),
        ({"prompt": "{text"}, "never closed"),
        ({"model": "gpt-9"}, "gpt-9"),
        ({"model": "text-embedding-3-small"}, "embeddings"),
        ({"type": "embeddings", "model": "gpt-4o"}, "not an embedding model"),
        ({"target_column": "text"}, "overwrite"),
        ({"target_branch": "bad..name"}, "branch name"),
    ],
)
def test_bad_requests_queue_nothing(repo: Any, body: dict[str, Any], needle: str) -> None:
    r = evaluate(repo, **body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["status_description"]
    assert repo.get(f"{R}/evaluations", headers=AUTH).json()["evaluations"] == []


def test_overwrite_replaces_a_column(repo: Any) -> None:
    done = finished(
        repo, evaluate(repo, target_column="text", overwrite=True).json()["evaluation"]["id"]
    )
    assert done["status"] == "completed", done
    assert read_parquet(repo, "main/data.parquet").column_names == ["text", "n"]


def test_not_a_table_and_missing_file(repo: Any) -> None:
    upload(repo, "notes.txt", b"hello")
    r = evaluate(repo, "main/notes.txt")
    assert r.status_code == 400 and "not a table" in r.json()["status_description"]
    assert evaluate(repo, "main/missing.parquet").status_code == 404
    assert repo.get(f"{R}/evaluations/nope", headers=AUTH).status_code == 404


@pytest.mark.inprocess
def test_generation_error_fails_naming_the_row(repo: Any, monkeypatch: Any) -> None:
    from evaldock.engines.errors import EngineError

    judge = repo.app.state.ctx.engines["judge"]
    real = judge.generate

    async def flaky(messages: Any, **kw: Any) -> Any:
        if "bad film" in messages[-1]["content"]:
            raise EngineError("the model timed out")
        return await real(messages, **kw)

    monkeypatch.setattr(judge, "generate", flaky)
    heads = repo.get(f"{R}/branches", headers=AUTH).json()["branches"]
    done = finished(repo, evaluate(repo).json()["evaluation"]["id"])
    assert done["status"] == "failed"
    assert "row 1" in done["error_message"] and "timed out" in done["error_message"]
    assert repo.get(f"{R}/branches", headers=AUTH).json()["branches"] == heads


@pytest.mark.inprocess
def test_real_mode_without_generator_names_the_setting(repo: Any, monkeypatch: Any) -> None:
    from evaldock.engines.errors import EngineUnavailable
    from evaldock.server.oxen import backend as oxen_backend

    def unavailable(judge: Any, model: str) -> str:
        raise EngineUnavailable("no generator model is configured", "set EVALDOCK_JUDGE_URLS")

    monkeypatch.setattr(oxen_backend, "_resolve_generator", unavailable)
    r = evaluate(repo)
    assert r.status_code == 400 and "EVALDOCK_JUDGE_URLS" in r.json()["status_description"]


def test_cancel(repo: Any) -> None:
    r = evaluate(repo)
    eval_id = r.json()["evaluation"]["id"]
    c = repo.post(f"{R}/evaluations/{eval_id}/cancel", headers=AUTH)
    assert c.status_code == 200
    assert finished(repo, eval_id)["status"] in ("cancelled", "completed")


@pytest.mark.inprocess
def test_startup_sweeps_parts_of_finished_evaluations(settings_factory: Any) -> None:
    from starlette.testclient import TestClient

    from evaldock.server.app import create_app

    settings = settings_factory()
    stale = settings.data_dir / "oxen" / "work" / "no-such-job"
    stale.mkdir(parents=True)
    (stale / "part-000000000000.arrow").write_bytes(b"left by a killed run")
    with TestClient(create_app(settings)):
        assert not stale.exists()
