"""Oxen's Merkle tree transport (RemoteRepo.download of a folder): node bytes checked
against a node that oxenai 0.65.1 itself wrote, and the tar layout its unpacker reads."""

from __future__ import annotations

import io
import struct
import tarfile

import xxhash

from evaldock.server.oxen import merkle
from evaldock.server.oxen.merkle import TreeBuilder, TreeFile

# `c.bin` (bytes 0..255) as oxenai 0.65.1 stored it after `oxen add` + `commit` (its
# LMDB node store): the file's payload inside its vnode's `children`, and that vnode's
# `node` blob. Commit 2b5cbd99...; the two u32s ce6b107644 ce39ebfb37 are the file's
# mtime (seconds, nanoseconds), which evaldock writes as 0.
OXEN_FILE_PAYLOAD = bytes.fromhex(
    "9181a756305f32355f30dc0010a446696c65a5632e62696ec0c410f1f8a93f50849ac39408a4433b952d71"
    "c410f1f8a93f50849ac39408a4433b952d71cd0100c4102b5cbd998f349dbeeef94c8ab0d95254ce6b1076"
    "44ce39ebfb37a662696e617279c0b86170706c69636174696f6e2f6f637465742d73747265616da362696e"
    "91c410f1f8a93f50849ac39408a4433b952d71aa53696e676c6546696c65a44469736b"
)
OXEN_VNODE_NODE = bytes.fromhex(
    "0278202a5f8c76dff6f1fe36191064f569240000009181a756305f32355f3093c410651cf0e215d19608"
    "6fa0e097505407a8a5564e6f64650103712d953b43a40894c39a84503fa9f8f10000000000000000a400"
    "000000000000"
)
COMMIT = "2b5cbd998f349dbeeef94c8ab0d95254"
C_BIN = bytes(range(256))


def tree_file(path: str, data: bytes, data_type: str = "binary", mime: str = "") -> TreeFile:
    h = format(xxhash.xxh3_128_intdigest(data), "x")
    return TreeFile(path, h, len(data), data_type, mime or "application/octet-stream", COMMIT)


def parse_node(blob: bytes) -> tuple[int, int, bytes, list[tuple[int, int, int, int]]]:
    """liboxen's MerkleNodeLookup: (type, parent, payload, [(type, hash, offset, len)])."""
    kind, parent, n = (
        blob[0],
        int.from_bytes(blob[1:17], "little"),
        struct.unpack("<I", blob[17:21])[0],
    )
    payload, rest = blob[21 : 21 + n], blob[21 + n :]
    assert len(rest) % 33 == 0
    rows = []
    for i in range(0, len(rest), 33):
        row = rest[i : i + 33]
        rows.append((row[0], int.from_bytes(row[1:17], "little"), *struct.unpack("<QQ", row[17:])))
    return kind, parent, payload, rows


def test_file_payload_is_byte_for_byte_oxens() -> None:
    f = tree_file("deep/c.bin", C_BIN)
    assert f.hash == "f1f8a93f50849ac39408a4433b952d71"  # Oxen's version hash of c.bin
    expected = OXEN_FILE_PAYLOAD.replace(bytes.fromhex("ce6b107644ce39ebfb37"), b"\x00\x00")
    assert merkle._file_payload(f) == expected


def test_vnode_layout_matches_oxens() -> None:
    # Oxen's own vnode: one file child whose payload is the 164 bytes above.
    kind, _, payload, rows = parse_node(OXEN_VNODE_NODE)
    assert kind == merkle.VNODE and payload.startswith(b"\x91\x81\xa7V0_25_0\x93\xc4\x10")
    assert rows == [(merkle.FILE, int("f1f8a93f50849ac39408a4433b952d71", 16), 0, 164)]
    # Ours for the same folder: the same shape, the file child under its content hash.
    root, nodes = TreeBuilder([tree_file("c.bin", C_BIN)], {COMMIT: 0}).build("deep")
    (d0, dir_node), (d1, vnode) = nodes
    assert (d0, d1, dir_node.hash, dir_node.kind, vnode.kind) == (
        0,
        0,
        root,
        merkle.DIR,
        merkle.VNODE,
    )
    kind, parent, payload, rows = parse_node(vnode.node)
    assert (kind, parent) == (merkle.VNODE, root)
    assert (
        payload
        == b"\x91\x81\xa7V0_25_0\x93\xc4\x10" + vnode.hash.to_bytes(16, "big") + b"\xa5VNode\x01"
    )
    # 156 bytes: Oxen's 164 less the two 5-byte mtimes written as 0 (1 byte each).
    assert rows == [(merkle.FILE, int("f1f8a93f50849ac39408a4433b952d71", 16), 0, 156)]
    assert vnode.children == merkle._file_payload(tree_file("c.bin", C_BIN))
    # The dir lists its vnode; its payload names it "deep" with 1 entry of 256 bytes.
    kind, _, payload, rows = parse_node(dir_node.node)
    assert kind == merkle.DIR and rows == [(merkle.VNODE, vnode.hash, 0, len(dir_node.children))]
    assert payload.startswith(
        b"\x91\x81\xa7V0_25_0\x9a\xa3Dir\xa4deep\xc4\x10" + root.to_bytes(16, "big")
    )
    assert b"\x01\xcd\x01\x00\xc4\x10" + int(COMMIT, 16).to_bytes(16, "big") in payload


def test_nested_folders_point_at_their_vnodes_and_names_change_hashes() -> None:
    files = [
        tree_file("a.txt", b"alpha\n", "text", "text/plain"),
        tree_file("sub/b.csv", b"x,y\n", "tabular", "text/csv"),
        tree_file("sub/deep/c.bin", C_BIN),
    ]
    root, nodes = TreeBuilder(files, {COMMIT: 0}).build("tree")
    by_hash = {n.hash: (depth, n) for depth, n in nodes}
    assert sorted(depth for depth, _ in nodes) == [0, 0, 1, 1, 2, 2]
    for _, node in nodes:
        rows = parse_node(node.node)[3]
        for ckind, chash, _, _ in rows:
            if ckind in (merkle.DIR, merkle.VNODE):
                assert parse_node(by_hash[chash][1].node)[1] == node.hash  # child names us
    # Same files, another folder name: another node (names are in the hash).
    assert merkle.folder_hash(files, "tree") == root
    assert merkle.folder_hash(files, "other") != root
    # Depth 0: the folder and its vnode only.
    assert [n.hash for n in merkle.iter_nodes(nodes, 0)] == [n.hash for d, n in nodes if d == 0]


def test_big_folder_spreads_over_vnodes() -> None:
    files = [tree_file(f"f{i}.txt", str(i).encode(), "text") for i in range(merkle.VNODE_SIZE + 5)]
    _, nodes = TreeBuilder(files, {}).build("big")
    _, _, _, rows = parse_node(nodes[0][1].node)
    assert [r[0] for r in rows] == [merkle.VNODE, merkle.VNODE]
    sizes = [len(parse_node(n.node)[3]) for _, n in nodes[1:]]
    assert sizes == [merkle.VNODE_SIZE, 5]


def test_tar_pairs_node_and_children_under_tree_nodes() -> None:
    _, nodes = TreeBuilder([tree_file("x/y.bin", b"y"), tree_file("z/y.bin", b"y")], {}).build("t")
    out = io.BytesIO()
    count = merkle.write_tar_gz(merkle.iter_nodes(nodes, -1), out)
    assert count == len(nodes) == 6
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        names = tar.getnames()
        assert len(names) == 2 * count
        for i in range(0, len(names), 2):
            base = names[i].rpartition("/")[0]
            assert names[i : i + 2] == [f"{base}/node", f"{base}/children"]
            prefix, suffix = base.split("/")[2:]
            assert base.startswith("tree/nodes/") and len(prefix) == 3
            assert tar.extractfile(names[i]).read() == next(  # type: ignore[union-attr]
                n.node for _, n in nodes if merkle.node_dir(n.hash) == base
            )
            assert int(prefix + suffix, 16)
