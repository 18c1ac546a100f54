"""The ranker interface (mock and CLIP) and the multi-field combination both share.

A ranker turns texts and images into L2-normalised float32 vectors in one space, and
ranks documents for queries by cosine similarity. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from .retrieval import topk_cosine

Kind = Literal["text", "image"]
KINDS: tuple[str, ...] = ("text", "image")


class Ranker(Protocol):
    model_name: str  # the model as the client named it, e.g. "Marqo/ViT-B-32.laion2b_s34b_b79k"
    signature: str  # what produced the vectors: model, checkpoint, device, precision
    dim: int  # embedding width

    def load(self, model: str, pretrained: str | None = None) -> None: ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, refs: Sequence[str]) -> np.ndarray: ...

    def embed_fields(
        self,
        rows: Sequence[Mapping[str, Any]],
        keys: Sequence[str],
        weights: Sequence[float],
        kinds: Mapping[str, str] | None = None,
    ) -> np.ndarray: ...

    def topk(
        self, queries: np.ndarray, docs: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (nothing to point anywhere)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def combine_fields(
    embed: Mapping[str, Callable[[list[str]], np.ndarray]],
    dim: int,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    weights: Sequence[float],
    kinds: Mapping[str, str] | None = None,
) -> np.ndarray:
    """GCL multi-field embedding: per key the normalised embedding of its value, summed with
    ``weights``, then L2-normalised.

    ``embed`` maps a kind ("text", "image") to the function embedding a list of values.
    Keys absent from ``kinds`` are text. A missing, ``None`` or blank value contributes a
    zero vector for its key, so the row is the normalised sum of its other keys; a row with
    no value under any key (or whose weighted sum cancels) comes back as all zeros and
    scores 0 against everything.
    """
    if len(keys) != len(weights):
        raise ValueError(f"{len(keys)} keys but {len(weights)} weights")
    kinds = kinds or {}
    bad = {k: v for k, v in kinds.items() if v not in KINDS}
    if bad:
        raise ValueError(f"unknown field kinds {bad}; use one of {KINDS}")
    total = np.zeros((len(rows), dim), dtype=np.float32)
    for key, weight in zip(keys, weights, strict=True):
        if weight == 0:
            continue
        at: list[int] = []
        values: list[str] = []
        for i, row in enumerate(rows):
            value = row.get(key)
            if not is_missing(value):
                at.append(i)
                values.append(value if isinstance(value, str) else str(value))
        if not values:
            continue
        # Each distinct value is embedded once: datasets repeat images and titles a lot.
        unique = list(dict.fromkeys(values))
        vectors = l2_normalise(embed[kinds.get(key, "text")](unique))
        position = {v: j for j, v in enumerate(unique)}
        total[at] += np.float32(weight) * vectors[[position[v] for v in values]]
    return l2_normalise(total)


class FieldRanker:
    """``embed_fields`` and ``topk`` on top of a subclass's ``embed_text``/``embed_images``."""

    dim: int

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_images(self, refs: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_fields(
        self,
        rows: Sequence[Mapping[str, Any]],
        keys: Sequence[str],
        weights: Sequence[float],
        kinds: Mapping[str, str] | None = None,
    ) -> np.ndarray:
        return combine_fields(
            {"text": self.embed_text, "image": self.embed_images},
            self.dim,
            rows,
            keys,
            weights,
            kinds,
        )

    def topk(self, queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return topk_cosine(queries, docs, k)
