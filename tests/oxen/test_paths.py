"""Repository paths and names: traversal in every spelling is refused."""

from __future__ import annotations

import pytest

from evaldock.server.oxen.errors import InvalidName, InvalidPath
from evaldock.server.oxen.filetypes import classify, extension
from evaldock.server.oxen.paths import check_branch_name, check_repo_name, clean_path


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "../etc/passwd",
        "a/../../b",
        "a/./b",
        "/etc/passwd",
        "a\\b",
        "..\\x",
        "a\x00b",
        "a\nb",
        "%2e%2e/x",
        "%2E%2E/x",
        "a/%2e%2e",
        ".%2e/x",
        "%252e%252e/x",
        "a%2fb",
        "a%5cb",
        "a%00b",
        "a//b",
        "C:/windows",
        ".oxen/config.toml",
        "",
        "x" * 256,
        # names.name_problem: bidi override, names of dots only, C1, U+FFFD, U+2028.
        "a\u202ecsv.exe",
        "...",
        "d/.../x",
        "a\u0085b",
        "a\ufffd.csv",
        "a\u2028b",
    ],
)
def test_bad_paths_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPath):
        clean_path(raw)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("data.csv", "data.csv"),
        ("a/b/c.parquet", "a/b/c.parquet"),
        ("dir/", "dir"),
        ("100%25.csv", "100%25.csv"),  # kept as given, not decoded
        ("..data", "..data"),
        ("a b/ü.txt", "a b/ü.txt"),
        (".hidden", ".hidden"),
    ],
)
def test_good_paths_are_kept(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean


def test_root_only_where_allowed() -> None:
    assert clean_path("", allow_root=True) == ""
    with pytest.raises(InvalidPath):
        clean_path("/", allow_root=True)


def test_names() -> None:
    assert check_repo_name("name", "my-repo_1.0") == "my-repo_1.0"
    for bad in ("", "a/b", "..", ".x", "-x", "a" * 101, "a b"):
        with pytest.raises(InvalidName):
            check_repo_name("name", bad)
    assert check_branch_name("feature/x-1") == "feature/x-1"
    for bad in ("", "a..b", "/a", "a/", "a//b", ".a", "a.lock", "a b", "a~1"):
        with pytest.raises(InvalidName):
            check_branch_name(bad)


@pytest.mark.parametrize(
    ("path", "head", "expected"),
    [
        ("d.csv", b"a,b\n", ("tabular", "text/plain", "csv")),
        ("d.tsv", b"a\tb\n", ("tabular", "text/plain", "tsv")),
        ("d.jsonl", b'{"a":1}\n', ("tabular", "text/plain", "jsonl")),
        ("d.parquet", b"PAR1\x15\x04\x15\xa0", ("tabular", "application/octet-stream", "parquet")),
        ("d.json", b"[{}]", ("tabular", "text/plain", "json")),
        ("d.json", b"{}", ("text", "text/plain", "json")),
        ("n.md", b"# t", ("text", "text/markdown", "md")),
        ("n.txt", "ü".encode() * 3000, ("text", "text/plain", "txt")),
        ("p.jpg", b"\xff\xd8\xff\xe0", ("image", "image/jpeg", "jpg")),
        ("x", bytes([0xFF, 0xFE, 0x00, 0x80]), ("binary", "application/octet-stream", "")),
        (".bashrc", b"x", ("text", "text/plain", "")),
    ],
)
def test_classification_follows_oxen(path: str, head: bytes, expected: tuple[str, ...]) -> None:
    ft = classify(path, head[:4096])
    assert (ft.data_type, ft.mime_type, ft.extension) == expected


def test_extension_like_rust() -> None:
    assert extension("a/b.tar.gz") == "gz"
    assert extension("a.b/c") == ""
    assert extension(".env") == ""
