"""A deterministic embedder with no model: feature-hashed tokens. Imports no torch.

Every lower-cased word of a text, and (at half weight) the whole text, is a *feature*;
blake2b of the model name and the feature gives 16 (dimension, sign) pairs, and the text's
vector is the sum of its features' ±1 entries, L2-normalised. So texts sharing words lie
closer (cosine ≈ shared / total features), distinct strings never tie exactly, the empty
string still gets a vector, and the same text gives the same vector in every process
(blake2b, never Python's salted ``hash()``).

Cost: one blake2b per new word (~0.5 µs; words are remembered, up to 200,000) and one
``np.bincount`` per 2,048 texts, so 50,000 short rows take about a second on one core.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaldock.engines.errors import EngineUnavailable

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NONZEROS = 16  # ±1 entries per feature: 16 of 384 keeps random features ~orthogonal
_WHOLE_WEIGHT = 0.5  # the whole-text feature, relative to one word's
_CHUNK = 2048  # texts per bincount: 2,048 x ~20 features x 16 entries stays under 10 MB
_MEMORY = 200_000  # remembered word digests (32 bytes each: ~15 MB with the dict)


class MockEmbedder:
    name = "mock"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self._dimension = int(options.get("dim", 384))
        if not 1 <= self._dimension <= 65536:
            raise EngineUnavailable(
                f"the mock embedder's dim must be in 1..65536, got {self._dimension}",
                hint="set the embedder option dim to a positive integer, e.g. 384",
            )
        self.model = str(options.get("model") or "evaldock-mock-embedder")
        # Different model names give different spaces, as different real models do.
        self._salt = f"{self.model}\x00".encode()
        self._digests: dict[str, bytes] = {}
        self.signature = (
            f"embedder:mock|model:{self.model}|dim:{self._dimension}|embed:hashed-tokens-v1"
        )

    @property
    def dimension(self) -> int:
        return self._dimension

    def _digest(self, feature: str) -> bytes:
        digest = self._digests.get(feature)
        if digest is None:
            digest = hashlib.blake2b(
                self._salt + feature.encode("utf-8", "surrogatepass"), digest_size=2 * _NONZEROS
            ).digest()
            if len(self._digests) < _MEMORY:
                self._digests[feature] = digest
        return digest

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        # batch_size is part of the interface; hashing has no batch to size.
        texts = list(texts)
        out = np.empty((len(texts), self._dimension), dtype=np.float32)
        for start in range(0, len(texts), _CHUNK):
            out[start : start + _CHUNK] = self._encode_chunk(texts[start : start + _CHUNK])
        return out

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        digests: list[bytes] = []
        owners: list[int] = []
        weights: list[float] = []
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            digests.extend(map(self._digest, words))
            # The whole text is unique per row: hash it, never remember it.
            digests.append(
                hashlib.blake2b(
                    self._salt + b"\x01" + text.encode("utf-8", "surrogatepass"),
                    digest_size=2 * _NONZEROS,
                ).digest()
            )
            owners.extend([row] * (len(words) + 1))
            weights.extend([1.0] * len(words))
            weights.append(_WHOLE_WEIGHT)
        raw = np.frombuffer(b"".join(digests), dtype="<u2").reshape(-1, _NONZEROS)
        cols = (raw >> 1).astype(np.int64) % self._dimension
        signs = (raw & 1).astype(np.float64) * 2.0 - 1.0
        flat = np.asarray(owners, dtype=np.int64)[:, None] * self._dimension + cols
        w = np.asarray(weights, dtype=np.float64)[:, None] * signs
        n = len(texts)
        sums = np.bincount(flat.ravel(), weights=w.ravel(), minlength=n * self._dimension)
        vectors = sums.reshape(n, self._dimension)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(
            np.float32
        )

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
