"""Ranker engines: field combination, image references, exact blocked top-k, mock and CLIP.

CLIP tests run a tiny randomly initialised model built on the spot and loaded through the
user paths (``pretrained=<file>``, ``local-dir:``, the checkpoints mapping, an HF cache);
nothing is downloaded. They skip when the [models] extra is absent.
"""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaldock.engines import registry
from evaldock.engines.errors import MODELS_EXTRA, EngineError, EngineUnavailable
from evaldock.engines.ranker import combine_fields, l2_normalise, topk_cosine
from evaldock.engines.ranker.images import read_image_bytes
from evaldock.engines.ranker.mock import MockRanker, image_tokens
from evaldock.engines.ranker.models import ModelSpec, parse_model
from evaldock.engines.signature import Signature, evaldock_version

ARCHS = {"ViT-B-32", "ViT-L-14", "evaldock-tiny-clip"}
_MISSING = [m for m in ("torch", "open_clip", "PIL") if not importlib.util.find_spec(m)]
# With @pytest.mark.models (deselect with -m 'not models'): skipped, saying why, on a
# [test]-only install.
needs_models = pytest.mark.skipif(
    bool(_MISSING), reason=f"needs {', '.join(_MISSING)}: {MODELS_EXTRA}"
)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """(model name, checkpoint file, folder) of the tiny CLIP."""
    from evaldock.engines.ranker.testing import build_tiny_clip

    folder = tmp_path_factory.mktemp("tiny-clip")
    name, checkpoint = build_tiny_clip(folder)
    return name, checkpoint, folder


@pytest.fixture(scope="module")
def clip(tiny: tuple[str, str, Path]) -> Any:
    from evaldock.engines.ranker.clip import ClipRanker

    name, checkpoint, _ = tiny
    return ClipRanker({"model": name, "pretrained": checkpoint, "device": "cpu"})


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five small PNGs with different content and sizes."""
    import PIL.Image as pil

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(5):
        pixels = rng.integers(0, 256, size=(40 + 9 * i, 50 + 7 * i, 3), dtype=np.uint8)
        path = folder / f"img {i}.png"  # a space: file:// URIs must percent-encode it
        pil.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


# -- model names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "pretrained", "expected"),
    [
        ("ViT-B-32", "laion2b_s34b_b79k", ModelSpec("builtin", "ViT-B-32", "laion2b_s34b_b79k")),
        ("ViT-B-32/laion2b_s34b_b79k", None, ModelSpec("builtin", "ViT-B-32", "laion2b_s34b_b79k")),
        ("ViT-B-32:laion2B-s34B-b79K", None, ModelSpec("builtin", "ViT-B-32", "laion2b_s34b_b79k")),
        (
            "Marqo/ViT-B-32.laion2b_s34b_b79k",
            None,
            ModelSpec("builtin", "ViT-B-32", "laion2b_s34b_b79k"),
        ),
        (
            "Marqo/ViT-B-32.laion2b_s34b_b79k",
            "/ckpt/vitb32.bin",
            ModelSpec("builtin", "ViT-B-32", "laion2b_s34b_b79k", "/ckpt/vitb32.bin"),
        ),
        ("ViT-L-14", "w.safetensors", ModelSpec("builtin", "ViT-L-14", None, "w.safetensors")),
        (
            "Marqo/marqo-ecommerce-embeddings-B",
            None,
            ModelSpec("hf-hub", "Marqo/marqo-ecommerce-embeddings-B"),
        ),
        ("hf-hub:laion/CLIP-ViT-B-32", None, ModelSpec("hf-hub", "laion/CLIP-ViT-B-32")),
        ("local-dir:/models/x", None, ModelSpec("local-dir", "/models/x")),
        ("ViT-B-32", None, ModelSpec("builtin", "ViT-B-32")),
    ],
)
def test_parse_model_spellings(model: str, pretrained: str | None, expected: ModelSpec) -> None:
    assert parse_model(model, pretrained, ARCHS.__contains__) == expected


def test_parse_model_rejects_conflicts() -> None:
    with pytest.raises(ValueError, match="names weights"):
        parse_model("ViT-B-32/openai", "laion2b_s34b_b79k", ARCHS.__contains__)
    with pytest.raises(ValueError, match="own weights"):
        parse_model("local-dir:/x", "openai", ARCHS.__contains__)
    with pytest.raises(ValueError, match="empty"):
        parse_model("  ", None, ARCHS.__contains__)
    # Every spelling of one model maps to one checkpoints-mapping key.
    keys = {
        parse_model(m, None, ARCHS.__contains__).key
        for m in (
            "ViT-B-32/laion2b_s34b_b79k",
            "Marqo/ViT-B-32.laion2b_s34b_b79k",
            "ViT-B-32.laion2b_s34b_b79k",
        )
    }
    assert keys == {"ViT-B-32/laion2b_s34b_b79k"}


# -- image references ----------------------------------------------------------------


def test_image_references(tmp_path: Path) -> None:
    path = tmp_path / "a b.png"
    path.write_bytes(b"\x89PNG fake bytes")
    raw = path.read_bytes()
    assert read_image_bytes(str(path)) == raw
    assert read_image_bytes(path.as_uri()) == raw  # file:///.../a%20b.png
    assert read_image_bytes("file://localhost" + path.as_uri()[7:]) == raw
    assert read_image_bytes(data_uri(path)) == raw
    assert read_image_bytes("a b.png", root=tmp_path) == raw
    assert read_image_bytes("data:text/plain,hi%20there") == b"hi there"

    url = "https://example.com/shirt.jpg"
    with pytest.raises(EngineError, match="no network") as err:
        read_image_bytes(url)
    assert url in str(err.value)
    assert read_image_bytes(url, fetcher=lambda u: u.encode()) == url.encode()
    with pytest.raises(EngineError, match="cannot read image"):
        read_image_bytes(str(tmp_path / "missing.png"))
    with pytest.raises(EngineError, match="base64"):
        read_image_bytes("data:image/png;base64,@@@")
    with pytest.raises(EngineError, match="unsupported"):
        read_image_bytes("s3://bucket/x.png")


# -- field combination ---------------------------------------------------------------


def test_combine_fields_semantics() -> None:
    vectors = {"a": [1.0, 0.0, 0.0], "b": [0.0, 2.0, 0.0], "img": [0.0, 0.0, 3.0]}

    def embed(values: list[str]) -> np.ndarray:
        return np.array([vectors[v] for v in values], dtype=np.float32)

    rows = [
        {"title": "a", "image": "img"},
        {"title": "b", "image": ""},  # blank: that key contributes nothing
        {"title": "a"},  # missing
        {"title": None, "image": "  "},  # nothing at all -> zero vector
    ]
    got = combine_fields(
        {"text": embed, "image": embed}, 3, rows, ["title", "image"], [0.3, 0.7], {"image": "image"}
    )
    expected = l2_normalise(
        np.array([[0.3, 0, 0.7], [0, 0.3, 0], [0.3, 0, 0], [0, 0, 0]], dtype=np.float32)
    )
    np.testing.assert_allclose(got, expected, atol=1e-7)
    with pytest.raises(ValueError, match="weights"):
        combine_fields({"text": embed}, 3, rows, ["title"], [1.0, 2.0])
    with pytest.raises(ValueError, match="kinds"):
        combine_fields({"text": embed}, 3, rows, ["title"], [1.0], {"title": "audio"})


# -- retrieval -----------------------------------------------------------------------


def brute_force(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full score matrix, rows ordered by (score desc, index asc)."""
    scores = q @ d.T
    order = np.lexsort((np.broadcast_to(np.arange(d.shape[0]), scores.shape), -scores), axis=1)
    order = order[:, : min(k, d.shape[0])]
    return order, np.take_along_axis(scores, order, axis=1)


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return l2_normalise(rng.standard_normal((n, dim), dtype=np.float32))


@pytest.mark.parametrize(
    ("block", "doc_block"), [(1, 1), (7, 13), (64, 100), (1000, 5000), (None, None)]
)
@pytest.mark.parametrize("k", [1, 10, 37, 500])
def test_topk_matches_brute_force(block: int | None, doc_block: int | None, k: int) -> None:
    rng = np.random.default_rng(k)
    q, d = unit(rng, 23, 16), unit(rng, 301, 16)
    idx, scores = topk_cosine(q, d, k, block=block, doc_block=doc_block)
    want_idx, want_scores = brute_force(q, d, k)
    assert idx.shape == scores.shape == (23, min(k, 301))
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    # Random floats have no exact ties, but blocked and full matmuls may round the last
    # bit differently: where scores differ by more than that, the order must agree.
    true = np.take_along_axis(q @ d.T, idx, axis=1)
    np.testing.assert_allclose(true, scores, atol=1e-6)
    gaps = np.abs(np.diff(want_scores, axis=1)) > 1e-5
    same = idx == want_idx
    assert same[:, :-1][gaps].all() and same[:, 1:][gaps].all()


@pytest.mark.parametrize(("block", "doc_block"), [(1, 1), (3, 5), (4, 64), (50, 1000)])
def test_topk_ties_go_to_the_lower_index(block: int, doc_block: int) -> None:
    # Small integer vectors: exact scores, many ties, the same answer for every tiling.
    rng = np.random.default_rng(1)
    q = rng.integers(0, 2, size=(17, 4)).astype(np.float32)
    d = rng.integers(0, 2, size=(200, 4)).astype(np.float32)
    for k in (1, 5, 50, 200, 250):
        idx, scores = topk_cosine(q, d, k, block=block, doc_block=doc_block)
        want_idx, want_scores = brute_force(q, d, k)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(scores, want_scores)


def test_topk_edges() -> None:
    rng = np.random.default_rng(2)
    q, d = unit(rng, 3, 8), unit(rng, 4, 8)
    idx, scores = topk_cosine(q, d, 10)  # k > N: every doc, sorted
    assert idx.shape == (3, 4) and sorted(idx[0].tolist()) == [0, 1, 2, 3]
    assert (np.diff(scores, axis=1) <= 0).all()
    assert topk_cosine(q, d, 0)[0].shape == (3, 0)
    assert topk_cosine(q, d[:0], 5)[0].shape == (3, 0)
    assert topk_cosine(q[:0], d, 5)[0].shape == (0, 4)
    with pytest.raises(ValueError, match="need"):
        topk_cosine(q, unit(rng, 4, 9), 2)
    with pytest.raises(ValueError, match="NaN"):
        topk_cosine(np.full((1, 8), np.nan, dtype=np.float32), d, 2)


def test_topk_when_every_tile_beats_the_last() -> None:
    # Documents in increasing similarity: each tile displaces the whole running top k,
    # the worst case for merging only the scores above the current k-th.
    rng = np.random.default_rng(5)
    q, d = unit(rng, 4, 8), unit(rng, 3000, 8)
    d = d[np.argsort(d @ q[0])]
    for k, block in ((1, 1), (10, 1), (10, 3), (100, 3)):
        idx, scores = topk_cosine(q, d, k, block=block, doc_block=97)
        want_idx, want_scores = brute_force(q, d, k)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
        np.testing.assert_array_equal(idx[0], want_idx[0])


def test_topk_never_holds_the_full_score_matrix() -> None:
    rng = np.random.default_rng(3)
    q, d = unit(rng, 2000, 32), unit(rng, 20_000, 32)
    full = 2000 * 20_000 * 4  # 160 MB of float32 scores
    tracemalloc.start()
    try:
        idx, _ = topk_cosine(q, d, 10, block=256, doc_block=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full / 10, f"peak {peak / 1e6:.0f} MB"
    want, _ = brute_force(q[:50], d, 10)
    np.testing.assert_array_equal(idx[:50, :5], want[:, :5])


@pytest.mark.models
@needs_models
def test_topk_torch_backend_agrees() -> None:
    import torch

    rng = np.random.default_rng(4)
    q = rng.integers(0, 3, size=(33, 6)).astype(np.float32)
    d = rng.integers(0, 3, size=(500, 6)).astype(np.float32)
    want = topk_cosine(q, d, 20, block=8, doc_block=64)
    for got in (
        topk_cosine(torch.from_numpy(q), torch.from_numpy(d), 20, block=8, doc_block=64),
        topk_cosine(q, d, 20, block=5, doc_block=77, device="cpu"),
    ):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# -- mock ranker ---------------------------------------------------------------------


def test_mock_ranker_is_deterministic_and_lexical() -> None:
    ranker = registry.create("ranker", "mock", {"dim": 128})
    again = MockRanker({"dim": 128})
    texts = ["red cotton shirt", "blue denim jeans", "red shirt", ""]
    a, b = ranker.embed_text(texts), again.embed_text(texts)
    assert a.shape == (4, 128) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    query = ranker.embed_text(["red shirt for summer"])
    idx, _ = ranker.topk(query, a[:2], 2)
    assert idx[0].tolist() == [0, 1]  # shares "red shirt"
    # Images by their names, so a text finds its image; nothing is fetched.
    refs = ["https://cdn.example.com/p/blue-jeans.jpg", "/data/img/red_shirt.png"]
    assert image_tokens(refs[0]) == ["blue", "jeans"]
    imgs = ranker.embed_images(refs)
    assert ranker.topk(ranker.embed_text(["red shirt"]), imgs, 1)[0][0, 0] == 1
    # Another model is another space; the signature says which.
    other = MockRanker({"dim": 128, "model": "Marqo/ViT-B-32.laion2b_s34b_b79k"})
    assert not np.allclose(other.embed_text(texts), a)
    assert other.signature == (
        "ranker:mock|model:Marqo/ViT-B-32.laion2b_s34b_b79k|pretrained:-|dim:128"
        f"|embed:hashed-tokens-v1|evaldock:{evaldock_version()}"
    )
    assert Signature.parse(other.signature).get("model") == "Marqo/ViT-B-32.laion2b_s34b_b79k"
    assert other.name == "mock:Marqo/ViT-B-32.laion2b_s34b_b79k"
    fields = ranker.embed_fields(
        [{"t": "red shirt", "i": refs[1]}, {"t": "jeans"}], ["t", "i"], [0.5, 0.5], {"i": "image"}
    )
    np.testing.assert_allclose(fields[1], ranker.embed_text(["jeans"])[0], atol=1e-6)


def test_mock_ranker_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from evaldock.engines import registry\n"
        "r = registry.create('ranker', 'mock', {})\n"
        "e = r.embed_fields([{'a': 'x y', 'b': 'data:image/png;base64,AAAA'}], ['a', 'b'],"
        " [1, 1], {'b': 'image'})\n"
        "r.topk(e, e, 1)\n"
        "import evaldock.engines.ranker.retrieval, evaldock.engines.ranker.clip\n"
        "bad = sorted(m for m in ('torch', 'open_clip', 'PIL') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- CLIP ranker ---------------------------------------------------------------------


def test_missing_open_clip_is_engine_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "open_clip" else real(name, *a),
    )
    with pytest.raises(EngineUnavailable) as err:
        registry.create("ranker", "clip", {"model": "ViT-B-32/laion2b_s34b_b79k"})
    assert "open_clip" in err.value.message and err.value.hint == MODELS_EXTRA


@pytest.mark.models
@needs_models
def test_clip_embeddings(clip: Any, images: list[Path]) -> None:
    texts = [f"a photo of item {i}" for i in range(11)] + ["", "x" * 2000]
    a = clip.embed_text(texts)
    assert a.shape == (13, clip.dim) and a.dtype == np.float32 and clip.dim == 64
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, clip.embed_text(texts))
    assert clip.embed_text([]).shape == (0, 64)
    refs = [str(p) for p in images]
    b = clip.embed_images(refs)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(b, clip.embed_images(refs))
    sig = Signature.parse(clip.signature)
    assert [k for k, _ in sig.fields] == [
        "ranker",
        "model",
        "weights",
        "sha256",
        "device",
        "precision",
        "open_clip",
        "evaldock",
    ]
    assert sig.get("model") == "evaldock-tiny-clip" and sig.get("device") == "cpu"


@pytest.mark.models
@needs_models
def test_clip_batch_size_does_not_change_results(
    tiny: tuple[str, str, Path], clip: Any, images: list[Path]
) -> None:
    from evaldock.engines.ranker.clip import ClipRanker

    name, checkpoint, _ = tiny
    texts = [f"query number {i} about shoes" for i in range(10)]
    refs = [str(p) for p in images]
    for batch, workers, prefetch in ((1, 0, 0), (3, 2, 0), (2, 2, 2)):
        other = ClipRanker(
            {
                "model": name,
                "pretrained": checkpoint,
                "device": "cpu",
                "batch_size": batch,
                "workers": workers,
                "prefetch": prefetch,
            }
        )
        np.testing.assert_allclose(other.embed_text(texts), clip.embed_text(texts), atol=1e-5)
        np.testing.assert_allclose(other.embed_images(refs), clip.embed_images(refs), atol=1e-5)


@pytest.mark.models
@needs_models
def test_clip_image_references_agree(clip: Any, images: list[Path]) -> None:
    path = images[2]
    out = clip.embed_images([str(path), path.as_uri(), data_uri(path)])
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])
    url = "http://images.example.com/shoe.png"
    with pytest.raises(EngineError, match="remote images cannot be fetched") as err:
        clip.embed_images([str(path), url])
    assert url in str(err.value)
    with pytest.raises(EngineError, match="cannot decode image"):
        clip.embed_images(["data:image/png;base64,bm90IGFuIGltYWdl"])


@pytest.mark.models
@needs_models
def test_clip_embed_fields_is_the_weighted_normalised_sum(clip: Any, images: list[Path]) -> None:
    rows = [
        {"title": "white sneakers", "image": str(images[0])},
        {"title": "black boots", "image": ""},
        {"title": "", "image": str(images[1])},
        {"title": "white sneakers", "image": str(images[3])},
    ]
    got = clip.embed_fields(rows, ["title", "image"], [0.7, 0.3], {"image": "image"})
    t = clip.embed_text(["white sneakers", "black boots"])
    i = clip.embed_images([str(images[0]), str(images[1]), str(images[3])])
    manual = l2_normalise(
        np.stack([0.7 * t[0] + 0.3 * i[0], 0.7 * t[1], 0.3 * i[1], 0.7 * t[0] + 0.3 * i[2]])
    )
    np.testing.assert_allclose(got, manual, atol=1e-5)
    np.testing.assert_allclose(got[1], t[1], atol=1e-5)  # one field only: that field


@pytest.mark.models
@needs_models
def test_clip_loads_through_every_local_path(
    tiny: tuple[str, str, Path], clip: Any, tmp_path: Path
) -> None:
    from evaldock.engines.ranker.clip import ClipRanker

    name, checkpoint, folder = tiny
    want = clip.embed_text(["a dog"])
    # An HF cache holding the model repository: hf-hub: names load from it, offline.
    snapshot = tmp_path / "hub" / "models--evaldock--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for f in ("open_clip_config.json", "open_clip_pytorch_model.bin"):
        (snapshot / f).write_bytes((folder / f).read_bytes())
    (tmp_path / "hub" / "models--evaldock--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--evaldock--tiny" / "refs" / "main").write_text("abc123")
    for options in (
        {"model": f"local-dir:{folder}"},
        {"model": name, "checkpoints": {name: checkpoint}},
        {"model": "ViT-B-32-ish", "checkpoints": {"ViT-B-32-ish": str(folder)}},
        {
            "model": "hf-hub:evaldock/tiny",
            "cache_dir": str(tmp_path / "hub"),
            "allow_download": False,
        },
        {"model": "evaldock/tiny", "checkpoints": {"hf-hub:evaldock/tiny": str(folder)}},
    ):
        ranker = ClipRanker({**options, "device": "cpu"})
        np.testing.assert_allclose(ranker.embed_text(["a dog"]), want, atol=1e-6)
    ranker = ClipRanker({"device": "cpu"})
    with pytest.raises(EngineError, match="no ranker model loaded"):
        ranker.embed_text(["x"])
    ranker.load(name, checkpoint)
    assert ranker.model_name == name


@pytest.mark.models
@needs_models
def test_clip_finds_the_architecture_beside_the_checkpoint(tiny: tuple[str, str, Path]) -> None:
    # A fresh process (like the server) where nothing registered the tiny architecture.
    name, checkpoint, _ = tiny
    code = (
        "from evaldock.engines import registry\n"
        f"r = registry.create('ranker', 'clip', {{'model': {name!r}, 'pretrained': {checkpoint!r},"
        " 'device': 'cpu'})\n"
        "assert r.embed_text(['hi']).shape == (1, 64)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.models
@needs_models
def test_clip_without_local_weights_says_how_to_supply_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evaldock.engines.ranker import clip as clip_module
    from evaldock.engines.ranker import weights

    # Pretend the network is down, so no test ever downloads (or waits on) real weights.
    monkeypatch.setattr(weights, "network_reachable", lambda *a, **k: False)
    empty = {"cache_dir": str(tmp_path), "device": "cpu", "checkpoints_table": "[marqtune.models]"}
    for options in (
        {"model": "Marqo/ViT-B-32.laion2b_s34b_b79k"},
        {"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "allow_download": False},
    ):
        with pytest.raises(EngineUnavailable) as err:
            clip_module.ClipRanker({**empty, **options})
        hint = err.value.hint
        assert "register a local checkpoint" in hint and "[marqtune.models]" in hint
        assert '"ViT-B-32/laion2b_s34b_b79k"' in hint and "pretrained" in hint
    with pytest.raises(EngineUnavailable, match="marqo-ecommerce") as err:
        clip_module.ClipRanker({**empty, "model": "Marqo/marqo-ecommerce-embeddings-B"})
    assert "folder" in err.value.hint
    for model, pretrained, message in (
        ("ViT-B-32", "not_a_tag", "unknown pretrained tag"),
        ("ViT-B-32", str(tmp_path / "missing.bin"), "checkpoint file not found"),
        ("ViT-B-32", None, "no weights named"),
        ("No-Such-Arch", None, "unknown ranker model"),
        (f"local-dir:{tmp_path / 'nope'}", None, "not found"),
    ):
        with pytest.raises(EngineUnavailable, match=message):
            clip_module.ClipRanker({**empty, "model": model, "pretrained": pretrained})


# -- what a ranker knows, and its loaded-model slot ------------------------------------

KNOWN_NAMES: list[tuple[str, str | None, bool]] = [
    ("ViT-B-32/laion2b_s34b_b79k", None, True),
    ("ViT-B-32:laion2B-s34B-b79K", None, True),
    ("Marqo/ViT-B-32.laion2b_s34b_b79k", None, True),
    ("ViT-B-32", "laion2b_s34b_b79k", True),
    ("hf-hub:Marqo/marqo-ecommerce-embeddings-B", None, True),
    ("Marqo/marqo-ecommerce-embeddings-B", None, True),
    ("ViT-B-32", None, False),  # no weights named: the CLIP ranker refuses it
    ("ViT-B-32", "not_a_tag", False),
    ("ViT-B-32/not_a_tag", None, False),
    ("No-Such-Arch", None, False),
    ("No-Such-Arch/laion2b_s34b_b79k", None, True),  # org/repo: a Hugging Face repository
    ("ViT-B-32", "/no/such/checkpoint.bin", False),
    ("local-dir:/no/such/folder", None, False),
    ("", None, False),
]


@pytest.mark.parametrize(("model", "pretrained", "known"), KNOWN_NAMES)
def test_mock_ranker_knows_what_clip_could_load(
    model: str, pretrained: str | None, known: bool
) -> None:
    assert MockRanker({}).knows(model, pretrained) is known


def test_knows_reads_the_configured_tables(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tuned.bin"
    checkpoint.write_bytes(b"x")
    (tmp_path / "my-arch.json").write_text("{}")
    folder = tmp_path / "model"
    folder.mkdir()
    ranker = MockRanker(
        {
            "model_configs": [str(tmp_path / "my-arch.json")],
            "checkpoints": {"ViT-B-32-custom": str(checkpoint), "gone": str(tmp_path / "gone")},
        }
    )
    assert ranker.knows("my-arch", str(checkpoint))
    assert not ranker.knows("my-arch")  # an architecture without weights
    assert ranker.knows("ViT-B-32-custom") and not ranker.knows("gone")
    assert ranker.knows("ViT-B-32", str(checkpoint))
    assert not ranker.knows(f"local-dir:{folder}")
    (folder / "open_clip_config.json").write_text("{}")
    assert ranker.knows(f"local-dir:{folder}")


def test_knows_imports_no_model_library() -> None:
    code = (
        "import sys\n"
        "from evaldock.engines.ranker.mock import MockRanker\n"
        "assert MockRanker({}).knows('ViT-B-32/laion2b_s34b_b79k')\n"
        "bad = sorted(m for m in ('torch', 'open_clip', 'PIL') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


class CountingRanker(MockRanker):
    def __init__(self, options: dict[str, Any]) -> None:
        self.loads: list[tuple[str, str | None]] = []
        self.fail = False
        super().__init__(options)

    def _load(self, model: str, pretrained: str | None) -> None:
        if self.fail:
            raise EngineUnavailable("cannot load", "test")
        self.loads.append((model, pretrained))
        time.sleep(0.02)  # long enough for another thread to arrive meanwhile
        super()._load(model, pretrained)


def test_using_loads_once_per_model_and_holds_the_ranker() -> None:
    ranker = CountingRanker({"dim": 8})
    assert ranker.loaded == ("evaldock-mock-clip", None)
    said: list[str] = []
    with ranker.using("a") as r:
        assert r is ranker and ranker.model_name == "a"
    with ranker.using("a", say=said.append):
        pass
    assert ranker.loads == [("evaldock-mock-clip", None), ("a", None)] and said == []
    with ranker.using("a", "w.bin", say=said.append):
        assert ranker.loaded == ("a", "w.bin")
    assert said == ["Loading model a with weights w.bin"]

    inside = 0
    most = 0
    guard = threading.Lock()

    def job(model: str) -> None:
        nonlocal inside, most
        with ranker.using(model, say=said.append):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.01)
            assert ranker.model_name == model  # nobody swaps the model mid-job
            with guard:
                inside -= 1

    threads = [threading.Thread(target=job, args=(m,)) for m in ("b", "c", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1
    assert "Waiting for the ranker: another job is using it" in said


def test_a_failed_load_leaves_nothing_loaded() -> None:
    ranker = CountingRanker({"dim": 8})
    ranker.fail = True
    with pytest.raises(EngineUnavailable), ranker.using("a"):
        pass
    assert ranker.loaded is None
    ranker.fail = False
    with ranker.using("evaldock-mock-clip"):
        pass
    assert ranker.loads[-1] == ("evaldock-mock-clip", None)  # loaded again, not trusted


@pytest.mark.models
@needs_models
def test_vendored_catalog_is_open_clips_listing() -> None:
    import open_clip

    from evaldock.engines.ranker.catalog import catalog

    data = catalog()
    listed: dict[str, list[str]] = {}
    for arch, tag in open_clip.list_pretrained():
        listed.setdefault(arch, []).append(tag)
    hint = "regenerate: python -m evaldock.engines.ranker.catalog"
    assert data["open_clip"] == open_clip.__version__, hint
    assert set(data["architectures"]) == set(open_clip.list_models()) - {"evaldock-tiny-clip"}
    assert data["pretrained"] == {a: sorted(t) for a, t in listed.items()}, hint


@pytest.mark.models
@needs_models
@pytest.mark.parametrize(("model", "pretrained", "known"), KNOWN_NAMES)
def test_clip_ranker_knows_the_same(
    clip: Any, model: str, pretrained: str | None, known: bool
) -> None:
    assert clip.knows(model, pretrained) is known


@pytest.mark.models
@needs_models
def test_checkpoints_load_with_weights_only(
    tiny: tuple[str, str, Path], clip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from evaldock.engines.ranker.clip import ClipRanker
    from evaldock.engines.ranker.weights import load_weights_only

    name, checkpoint, folder = tiny
    calls: list[dict[str, Any]] = []
    real = torch.load

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording)
    for options in ({"model": name, "pretrained": checkpoint}, {"model": f"local-dir:{folder}"}):
        ClipRanker({**options, "device": "cpu"})
    assert len(calls) == 2 and all(c.get("weights_only") is True for c in calls)
    # The fallback for open_clip versions without the flag loads the same weights.
    import open_clip

    net = open_clip.create_model(name, pretrained=None, device="cpu")
    load_weights_only(net, checkpoint)
    assert len(calls) == 3 and calls[-1].get("weights_only") is True
    for key, value in clip.model.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key
