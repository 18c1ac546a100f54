"""Oxen's Merkle tree transport, built from a folder's files for ``RemoteRepo.download``.

The client downloads a folder by asking ``GET .../tree/download/{commit}?subtrees=<folder>``
for a tar.gz of tree nodes, loading them into its node store, asking
``.../tree/nodes/resource/{commit}/<folder>`` for the folder node's hash, walking the nodes,
and fetching the files' bytes by their content hash (``QUERY .../versions``).

The byte layout is liboxen's (``core/db/merkle_node/merkle_node_db.rs``):

- each node is two tar entries, ``tree/nodes/{first 3 hex}/{rest}/node`` and ``.../children``
  (the hash as unpadded lowercase hex, like every Oxen hash);
- ``node``: node type (u8), parent hash (u128 little-endian), payload length (u32 LE), the
  node's msgpack payload, then one 33-byte row per child: type (u8), hash (u128 LE), offset
  and length (u64 LE) of the child's payload inside ``children``;
- ``children``: the children's payloads, concatenated;
- a payload is ``rmp_serde`` of ``{node: E<Kind>Node::V0_25_0(data)}``: the fixed prefix
  ``91 81 a7 "V0_25_0"`` then the data struct as a msgpack array of its fields in
  declaration order (u128 hashes as 16-byte big-endian bin, enums as their variant name).

Node types: 0 commit, 1 dir, 2 vnode, 3 file. A dir's children are vnodes (Oxen splits a
big folder across vnodes); a vnode's children are files and dirs. Files have no node
entry of their own: their payloads live in their vnode's ``children``.

Hashes. A file node's hash is its content hash (xxh3-128, the same as a metadata entry's
``hash``): the client asks ``/versions`` for the bytes by that hash. Dir and vnode hashes
are this module's own (xxh3-128 over the name and the children's names and hashes), so two
folders with the same files but different names never share a node; they are not the ones
oxen-server would compute (evaldock's commit ids are its own too) and the client does not
recompute them.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import xxhash

COMMIT, DIR, VNODE, FILE = 0, 1, 2, 3

# liboxen's DEFAULT_VNODE_SIZE: a folder's entries are spread over vnodes of at most
# 10,000 children, which keeps each ``children`` blob near 1.5 MB (~150 bytes an entry).
VNODE_SIZE = 10_000

_ENVELOPE = b"\x91\x81\xa7V0_25_0"


# -- msgpack, the few shapes rmp_serde writes for these structs ------------------------


def _uint(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return b"\xcc" + bytes([n])
    if n < 0x10000:
        return b"\xcd" + struct.pack(">H", n)
    if n < 0x1_0000_0000:
        return b"\xce" + struct.pack(">I", n)
    return b"\xcf" + struct.pack(">Q", n)


def _str(s: str) -> bytes:
    raw = s.encode()
    n = len(raw)
    if n < 32:
        return bytes([0xA0 | n]) + raw
    if n < 0x100:
        return b"\xd9" + bytes([n]) + raw
    if n < 0x10000:
        return b"\xda" + struct.pack(">H", n) + raw
    return b"\xdb" + struct.pack(">I", n) + raw


def _hash(h: int) -> bytes:
    # rmp_serde writes a u128 as a 16-byte bin, big-endian.
    return b"\xc4\x10" + h.to_bytes(16, "big")


def _array(items: list[bytes]) -> bytes:
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return head + b"".join(items)


def _map(items: dict[str, int]) -> bytes:
    n = len(items)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return head + b"".join(_str(k) + _uint(v) for k, v in sorted(items.items()))


# -- the tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeFile:
    """One file under the folder: its path relative to the folder and what its node says."""

    path: str
    hash: str  # xxh3-128, unpadded hex (the blob's Oxen hash)
    size: int
    data_type: str
    mime_type: str
    last_commit_id: str  # hex (evaldock commit ids are xxh3-128 hex too)


@dataclass
class _Dir:
    name: str
    files: list[TreeFile] = field(default_factory=list)
    dirs: dict[str, _Dir] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    """A dir or vnode as stored: its hash, type and the two blobs."""

    hash: int
    kind: int
    node: bytes
    children: bytes


def _hex_int(value: str) -> int:
    try:
        return int(value, 16) if value else 0
    except ValueError:
        # Not hex (a hand-edited id): a stable stand-in, the client only echoes it.
        return xxhash.xxh3_128_intdigest(value.encode())


def _file_payload(f: TreeFile) -> bytes:
    name = f.path.rpartition("/")[2]
    h = _hex_int(f.hash)
    extension = name.rpartition(".")[2] if "." in name else ""
    fields = [
        _str("File"),
        _str(name),
        b"\xc0",  # metadata_hash: None
        _hash(h),  # hash: the content hash
        _hash(h),  # combined_hash: content hash when there is no metadata
        _uint(f.size),
        _hash(_hex_int(f.last_commit_id)),
        _uint(0),  # last_modified_seconds
        _uint(0),  # last_modified_nanoseconds
        _str(f.data_type),
        b"\xc0",  # metadata: None
        _str(f.mime_type),
        _str(extension),
        _array([_hash(h)]),  # chunk_hashes: the whole file is one chunk
        _str("SingleFile"),
        _str("Disk"),
    ]
    return _ENVELOPE + _array(fields)


def _node_blob(
    kind: int, parent: int, payload: bytes, children: list[tuple[int, int, bytes]]
) -> bytes:
    out = io.BytesIO()
    out.write(bytes([kind]))
    out.write(parent.to_bytes(16, "little"))
    out.write(struct.pack("<I", len(payload)))
    out.write(payload)
    offset = 0
    for ckind, chash, cpayload in children:
        out.write(bytes([ckind]))
        out.write(chash.to_bytes(16, "little"))
        out.write(struct.pack("<QQ", offset, len(cpayload)))
        offset += len(cpayload)
    return out.getvalue()


@dataclass
class _Built:
    hash: int
    payload: bytes
    num_bytes: int
    counts: dict[str, int]
    sizes: dict[str, int]
    last_commit: str
    nodes: list[tuple[int, Node]]  # (depth below the built folder, node), parents first


class TreeBuilder:
    """Builds the nodes of one folder (``files`` relative to it) bottom-up.

    ``commit_rank`` orders commit ids (higher = newer) so a dir node names the newest
    commit that changed something under it.
    """

    def __init__(self, files: Iterable[TreeFile], commit_rank: dict[str, int]) -> None:
        self.root = _Dir("")
        self.rank = commit_rank
        for f in files:
            d = self.root
            *folders, _ = f.path.split("/")
            for part in folders:
                d = d.dirs.setdefault(part, _Dir(part))
            d.files.append(f)

    def build(self, name: str) -> tuple[int, list[tuple[int, Node]]]:
        """The folder node's hash (named ``name``, its last path segment) and every node
        under it with its depth (0 = the folder and its vnodes)."""
        self.root.name = name
        built = self._build(self.root, 0, parent=0)
        return built.hash, built.nodes

    def _newest(self, a: str, b: str) -> str:
        if not a:
            return b
        return b if self.rank.get(b, -1) > self.rank.get(a, -1) else a

    def _build(self, d: _Dir, depth: int, parent: int) -> _Built:
        # Children first: a dir's hash covers its children's names and hashes.
        subs = {n: self._build(sub, depth + 1, 0) for n, sub in d.dirs.items()}
        entries: list[tuple[str, int, int, bytes]] = []  # (name, kind, hash, payload)
        counts: dict[str, int] = {}
        sizes: dict[str, int] = {}
        total = 0
        last = ""
        for f in d.files:
            entries.append((f.path.rpartition("/")[2], FILE, _hex_int(f.hash), _file_payload(f)))
            counts[f.data_type] = counts.get(f.data_type, 0) + 1
            sizes[f.data_type] = sizes.get(f.data_type, 0) + f.size
            total += f.size
            last = self._newest(last, f.last_commit_id)
        for n, b in subs.items():
            entries.append((n, DIR, b.hash, b.payload))
            for k, v in b.counts.items():
                counts[k] = counts.get(k, 0) + v
            for k, v in b.sizes.items():
                sizes[k] = sizes.get(k, 0) + v
            total += b.num_bytes
            last = self._newest(last, b.last_commit)
        entries.sort(key=lambda e: e[0])
        h = xxhash.xxh3_128()
        h.update(b"dir\0" + d.name.encode() + b"\0")
        for ename, kind, ehash, _ in entries:
            h.update(f"{kind}\0{ename}\0{ehash:x}\n".encode())
        dir_hash = h.intdigest()
        payload = _ENVELOPE + _array(
            [
                _str("Dir"),
                _str(d.name),
                _hash(dir_hash),
                _uint(len(entries)),
                _uint(total),
                _hash(_hex_int(last)),
                _uint(0),  # last_modified_seconds
                _uint(0),  # last_modified_nanoseconds
                _map(counts),
                _map(sizes),
            ]
        )
        vnodes: list[tuple[int, bytes, Node]] = []
        for i in range(0, len(entries), VNODE_SIZE):
            part = entries[i : i + VNODE_SIZE]
            vhash = xxhash.xxh3_128_intdigest(f"vnode\0{dir_hash:x}\0{i}".encode())
            vpayload = _ENVELOPE + _array([_hash(vhash), _str("VNode"), _uint(len(part))])
            rows = [(kind, ehash, epayload) for _, kind, ehash, epayload in part]
            vnode = Node(
                vhash,
                VNODE,
                _node_blob(VNODE, dir_hash, vpayload, rows),
                b"".join(p for _, _, p in rows),
            )
            vnodes.append((vhash, vpayload, vnode))
        own = Node(
            dir_hash,
            DIR,
            _node_blob(DIR, parent, payload, [(VNODE, vh, vp) for vh, vp, _ in vnodes]),
            b"".join(vp for _, vp, _ in vnodes),
        )
        nodes: list[tuple[int, Node]] = [(depth, own)]
        nodes += [(depth, v) for _, _, v in vnodes]
        # A subfolder's parent is the vnode that lists it (known only now).
        holder = {name: vnodes[i // VNODE_SIZE][0] for i, (name, _, _, _) in enumerate(entries)}
        for n, b in subs.items():
            (sub_depth, sub), *rest = b.nodes
            node = sub.node[:1] + holder[n].to_bytes(16, "little") + sub.node[17:]
            nodes += [(sub_depth, Node(sub.hash, sub.kind, node, sub.children)), *rest]
        return _Built(dir_hash, payload, total, counts, sizes, last, nodes)


def node_dir(h: int) -> str:
    """``tree/nodes/{3 hex}/{rest}``: liboxen's ``node_db_prefix`` of the unpadded hex."""
    s = format(h, "x")
    return f"tree/nodes/{s[:3]}/{s[3:]}"


def iter_nodes(nodes: Iterable[tuple[int, Node]], max_depth: int) -> Iterator[Node]:
    """Nodes down to ``max_depth`` (-1 = all), each once (identical subfolders share one)."""
    seen: set[int] = set()
    for depth, node in nodes:
        if (max_depth < 0 or depth <= max_depth) and node.hash not in seen:
            seen.add(node.hash)
            yield node


def write_tar_gz(nodes: Iterable[Node], out: BinaryIO) -> int:
    """The nodes as liboxen's server wire layout (``node`` then ``children``, adjacent);
    gzip level 1 like oxen-server's ``Compression::fast``. Returns how many nodes."""
    count = 0
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for node in nodes:
            base = node_dir(node.hash)
            for leaf, data in (("node", node.node), ("children", node.children)):
                info = tarfile.TarInfo(f"{base}/{leaf}")
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
            count += 1
    return count


def folder_hash(files: Iterable[TreeFile], name: str) -> int:
    """The hash :class:`TreeBuilder` gives the folder ``name`` holding ``files``."""
    h, _ = TreeBuilder(files, {}).build(name)
    return h


__all__ = [
    "COMMIT",
    "DIR",
    "FILE",
    "VNODE",
    "Node",
    "TreeBuilder",
    "TreeFile",
    "folder_hash",
    "iter_nodes",
    "node_dir",
    "write_tar_gz",
]
