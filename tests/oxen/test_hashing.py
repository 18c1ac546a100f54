"""Blob store: Oxen's content hash (xxh3-128, unpadded hex), SHA-256 keys, atomic writes."""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path

import pytest
import xxhash

from evaldock.server.oxen.blobs import BlobNotFound, BlobStore, OxenHasher, oxen_hash


def test_hash_is_xxh3_128_as_rust_prints_a_u128() -> None:
    for data in (b"", b"hello", bytes(range(256)) * 100):
        assert oxen_hash(data) == format(xxhash.xxh3_128_intdigest(data), "x")
        assert int(oxen_hash(data), 16) == xxhash.xxh3_128_intdigest(data)
    # b"30" hashes to 0b165d...: Rust's format!("{:x}") drops the leading zero, so the
    # zero-padded hexdigest would not equal what Oxen reports.
    assert xxhash.xxh3_128_hexdigest(b"30").startswith("0")
    assert oxen_hash(b"30") == xxhash.xxh3_128_hexdigest(b"30").lstrip("0")
    assert len(oxen_hash(b"30")) == 31


def test_streaming_hash_equals_one_shot() -> None:
    data = bytes(range(256)) * 5000
    h = OxenHasher()
    for i in range(0, len(data), 4097):
        h.update(data[i : i + 4097])
    assert h.hexdigest() == oxen_hash(data)


def test_put_stores_by_sha256_and_dedups(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"a,b\n1,2\n" * 1000
    blob = store.put_chunks([data[:100], data[100:]])
    assert blob.key == hashlib.sha256(data).hexdigest()
    assert blob.hash == oxen_hash(data) and blob.size == len(data)
    assert store.read_bytes(blob.key) == data
    again = store.put_file(io.BytesIO(data))
    assert again == blob
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    assert store.put_file(src) == blob
    assert b"".join(store.iter_chunks(blob.key, 1000)) == data
    assert list(store.keys()) == [blob.key]
    assert list(store.tmp_dir.iterdir()) == []


def test_permissions_are_private(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob = store.put_bytes(b"secret")
    assert stat.S_IMODE(store.path(blob.key).stat().st_mode) == 0o600
    for folder in (store.root, store.path(blob.key).parent, tmp_path / "oxen"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_aborted_write_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"partial")
        raise RuntimeError("client went away")
    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.keys()) == []
    with pytest.raises(BlobNotFound):
        store.read_bytes("ab" * 32)


def test_collect_keeps_referenced_and_young_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    a, b = store.put_bytes(b"a"), store.put_bytes(b"b")
    assert store.collect({a.key}, min_age_s=3600) == 0  # b is too young to be an orphan
    assert store.collect({a.key}, min_age_s=0) == 1
    assert store.exists(a.key) and not store.exists(b.key)
