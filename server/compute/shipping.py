"""Files between the API process and Ray's nodes.

Inputs (a task argument marked :class:`.marks.InputFile`, or such a field of a dataclass
argument) can travel through Ray's object store (``[compute] ship_inputs``): the API
process puts each distinct file once (:class:`InputCache`, keyed by path, size and
modification time) and the task gets a :class:`Shipped` reference in its place; on the
node, :func:`materialise` writes the bytes once into a node-local cache file and hands
the task that path. A node then needs no copy of the API machine's disk to read a
dataset, and a dataset evaluated ten times crosses the network once per node.

Outputs are still written under ``[server] data`` by path: on a cluster of several
machines that folder must be mounted at the same path on every node.
:func:`check_shared_data` finds the nodes that cannot see it (one warning each).

Ray is imported inside the functions: this module loads without it.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .marks import InputFile

log = logging.getLogger("evaldock.compute.ray")

# Refs the API process keeps (each pins its file's bytes in the object store): the few
# datasets evaluated again and again, within a bound the object store (30% of a node's
# memory by default) holds with room for the tasks' own objects.
INPUT_ENTRIES = 8
INPUT_BYTES = 2 << 30
# A node-local copy unused this long is removed when another is written (a day: a
# dataset evaluated daily stays).
STALE_SECONDS = 24 * 3600
# Files travel in pieces this big: the API process (and a node writing its copy) holds
# one piece at a time, so shipping a 2 GB dataset costs 64 MiB of memory, not 2 GB.
PIECE_BYTES = 64 << 20
SHARED_DATA_FIX = (
    "mount [server] data at the same path on every node, or run evaldock on a one-node cluster"
)


@dataclasses.dataclass(frozen=True)
class Shipped:
    """An input in the object store: what a task gets in place of its path. A folder
    (a columnar dataset) ships its files, one level deep."""

    # The ray.ObjectRefs of the pieces, in order: one file's, or {name: refs} for a folder.
    ref: Any
    digest: str  # of the contents, names and modification times: the node cache's key
    name: str  # the file's or folder's own name (a reader may go by its suffix)
    folder: bool
    # (name, size, mtime_ns) of each file: the copy keeps the modification times, which
    # a resumable evaluation's fingerprint reads (marqtune's work state).
    stamps: tuple[tuple[str, int, int], ...]

    @property
    def size(self) -> int:
        return sum(size for _, size, _ in self.stamps)


Ship = Callable[[str], Awaitable[Shipped | str]]


async def ship_args(args: tuple[Any, ...], ship: Ship) -> tuple[Any, ...]:
    """``args`` with each :class:`InputFile` (and each such field of a dataclass
    argument, one level deep) replaced by what ``ship`` made of it."""
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, InputFile):
            out.append(await ship(arg))
        elif dataclasses.is_dataclass(arg) and not isinstance(arg, type):
            changes = {}
            for f in dataclasses.fields(arg):
                value = getattr(arg, f.name)
                if f.init and isinstance(value, InputFile):
                    # A field typed str holds a Shipped until the node's materialise
                    # (dataclasses check no types).
                    changes[f.name] = await ship(value)
            out.append(dataclasses.replace(arg, **changes) if changes else arg)
        else:
            out.append(arg)
    return tuple(out)


def materialise(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """On a node: ``args`` with each :class:`Shipped` replaced by the path of its
    node-local copy (an :class:`InputFile`), the reverse of :func:`ship_args`."""
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, Shipped):
            out.append(InputFile(local_copy(arg)))
        elif dataclasses.is_dataclass(arg) and not isinstance(arg, type):
            changes = {
                f.name: InputFile(local_copy(getattr(arg, f.name)))
                for f in dataclasses.fields(arg)
                if f.init and isinstance(getattr(arg, f.name), Shipped)
            }
            out.append(dataclasses.replace(arg, **changes) if changes else arg)
        else:
            out.append(arg)
    return tuple(out)


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / "evaldock-inputs"


def local_copy(shipped: Shipped) -> str:
    """The node-local copy of ``shipped``: fetched from the object store and written
    (atomically, by rename) by the first task on this node that needs it."""
    folder = cache_root() / shipped.digest
    target = folder / shipped.name
    if target.exists():
        with contextlib.suppress(OSError):
            os.utime(folder)  # in use: not stale
        return str(target)
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{shipped.name}.{os.getpid()}.{threading.get_ident()}.part"
    try:
        if shipped.folder:
            part.mkdir()
            for name, _, mtime in shipped.stamps:
                _write_pieces(ray, shipped.ref[name], part / name, mtime)
        else:
            _write_pieces(ray, shipped.ref, part, shipped.stamps[0][2])
        try:
            os.replace(part, target)
        except OSError:
            if not target.exists():  # another task of this node wrote it first: fine
                raise
    finally:
        _remove(part)
    _prune(folder)
    return str(target)


def _write_pieces(ray: Any, refs: list[Any], path: Path, mtime: int) -> None:
    with path.open("wb") as out:
        for ref in refs:  # one piece in memory at a time
            out.write(ray.get(ref))
    os.utime(path, ns=(mtime, mtime))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _prune(keep: Path) -> None:
    cutoff = time.time() - STALE_SECONDS
    for folder in cache_root().iterdir():
        with contextlib.suppress(OSError):
            if folder != keep and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder)


def stamp(path: str) -> tuple[bool, tuple[tuple[str, int, int], ...]]:
    """(a folder?, each file's (name, size, mtime_ns)) of an input, one level deep."""
    if os.path.isdir(path):
        files = sorted((e for e in os.scandir(path) if e.is_file()), key=lambda e: e.name)
        return True, tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in files)
    st = os.stat(path)
    return False, ((os.path.basename(path), st.st_size, st.st_mtime_ns),)


class InputCache:
    """The API process's refs of shipped inputs: each file put once while it stays
    among the newest :data:`INPUT_ENTRIES` (and :data:`INPUT_BYTES`); an evicted ref is
    dropped, and Ray frees its bytes once no running task holds it."""

    def __init__(
        self,
        ray: Any,
        io: concurrent.futures.Executor,
        *,
        entries: int = INPUT_ENTRIES,
        max_bytes: int = INPUT_BYTES,
    ) -> None:
        self.ray = ray
        self._io = io
        self.entries = entries
        self.max_bytes = max_bytes
        self._refs: collections.OrderedDict[Any, asyncio.Future[Shipped]] = (
            collections.OrderedDict()
        )
        self.puts = 0  # files put into the object store (tests, metrics)

    async def ship(self, path: str) -> Shipped | str:
        """``path``'s :class:`Shipped`; a path that does not exist stays a path (the
        task reports it missing as it would locally)."""
        try:
            # A stat or a folder listing (microseconds): on the loop.
            key = (os.path.realpath(path), *stamp(path))
        except FileNotFoundError:
            return path
        found = self._refs.get(key)
        if found is not None:
            self._refs.move_to_end(key)
            return await asyncio.shield(found)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Shipped] = loop.create_future()
        self._refs[key] = future
        try:
            shipped = await asyncio.shield(loop.run_in_executor(self._io, self._put, path))
        except BaseException as exc:
            self._refs.pop(key, None)
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: nobody else may be waiting
            else:
                future.cancel()
            raise
        future.set_result(shipped)
        self._evict()
        return shipped

    def _put(self, path: str) -> Shipped:
        folder, stamps = stamp(path)
        digest = hashlib.sha256(repr((folder, stamps)).encode())
        refs: list[Any] | dict[str, list[Any]]
        if folder:
            refs = {name: self._put_pieces(Path(path, name), digest) for name, _, _ in stamps}
        else:
            refs = self._put_pieces(Path(path), digest)
        self.puts += 1
        name = os.path.basename(os.path.normpath(path))
        return Shipped(refs, digest.hexdigest(), name, folder, stamps)

    def _put_pieces(self, path: Path, digest: Any) -> list[Any]:
        refs = []
        with path.open("rb") as fh:
            while piece := fh.read(PIECE_BYTES):
                digest.update(piece)
                refs.append(self.ray.put(piece))
        return refs

    def _evict(self) -> None:
        def total() -> int:
            return sum(f.result().size for f in self._refs.values() if f.done())

        while len(self._refs) > 1 and (len(self._refs) > self.entries or total() > self.max_bytes):
            oldest = next(iter(self._refs))
            if not self._refs[oldest].done():
                return
            del self._refs[oldest]

    def clear(self) -> None:
        self._refs.clear()


# -- outputs: the shared data folder --------------------------------------------------------


def sees(path: str) -> bool:
    """A task: whether this node has ``path``."""
    return os.path.exists(path)


def nodes_missing(ray: Any, path: str, timeout: float = 60.0) -> list[str]:
    """The alive nodes (as "address (node id)") on which ``path`` does not exist, each
    asked by a task pinned to it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(sees)
    asked: dict[str, Any] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        name = f"{node.get('NodeManagerAddress', '?')} ({node['NodeID'][:12]})"
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        # No CPU held: the check must not wait behind the jobs' tasks.
        asked[name] = probe.options(num_cpus=0, scheduling_strategy=strategy).remote(path)
    missing = []
    for name, ref in asked.items():
        try:
            if not ray.get(ref, timeout=timeout):
                missing.append(name)
        except Exception as exc:  # a node that cannot run the check says nothing either way
            log.warning("could not check [server] data on Ray node %s: %s", name, exc)
    return missing


def check_shared_data(ray: Any, data_dir: Path) -> list[str]:
    """Write a marker under ``data_dir`` and ask every node for it; each node that does
    not see it gets one warning with the fix. The nodes that failed the check."""
    marker = data_dir.resolve() / f".ray-check-{uuid.uuid4().hex}"
    marker.write_text("evaldock: a node that sees this file shares [server] data\n")
    try:
        missing = nodes_missing(ray, str(marker))
    finally:
        marker.unlink(missing_ok=True)
    for name in missing:
        log.warning(
            "Ray node %s cannot see [server] data (%s): tasks it runs cannot write the jobs' "
            "outputs there, and jobs that need them fail; %s",
            name,
            data_dir,
            SHARED_DATA_FIX,
        )
    return missing
