"""What the mock and CLIP rankers share: the multi-field combination, top-k, the
loaded-model slot (:meth:`FieldRanker.using`) and the catalog of loadable names.

A ranker (:class:`evaldock.engines.protocols.Ranker`) turns texts and images into
L2-normalised float32 vectors in one space, and ranks documents for queries by cosine
similarity. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .catalog import is_known
from .retrieval import topk_cosine

KINDS: tuple[str, ...] = ("text", "image")


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
    """``embed_fields``, ``topk``, ``knows`` and the loaded-model slot, on top of a
    subclass's ``_load``/``embed_text``/``embed_images``.

    A ranker holds one loaded model. :meth:`using` is how threads share it: it holds the
    ranker's lock for the block and loads only when the wanted model is not the loaded one,
    so consecutive evaluations of one model load it once.
    """

    implementation = "ranker"  # the registry name, first part of :attr:`name`
    dim: int
    model_name: str
    signature: str

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self._lock = threading.RLock()
        self._loaded: tuple[str, str | None] | None = None

    @property
    def name(self) -> str:
        return f"{self.implementation}:{self.model_name or '-'}"

    # -- the loaded model ----------------------------------------------------------------
    def _load(self, model: str, pretrained: str | None) -> None:
        raise NotImplementedError

    def load(self, model: str, pretrained: str | None = None) -> None:
        """Load ``model`` (replacing the loaded one); EngineUnavailable when impossible."""
        pretrained = pretrained or None
        with self._lock:
            self._loaded = None  # a failed load leaves nothing loaded
            self._load(model, pretrained)
            self._loaded = (model, pretrained)

    @property
    def loaded(self) -> tuple[str, str | None] | None:
        """``(model, pretrained)`` as last loaded, None when nothing is."""
        return self._loaded

    @contextlib.contextmanager
    def using(
        self,
        model: str,
        pretrained: str | None = None,
        *,
        say: Callable[[str], None] | None = None,
    ) -> Iterator[FieldRanker]:
        """Hold the ranker with ``model`` loaded for the block (blocking other threads).

        ``say`` hears about waiting and loading (a job log line each).
        """
        pretrained = pretrained or None
        if not self._lock.acquire(blocking=False):
            if say is not None:
                say("Waiting for the ranker: another job is using it")
            self._lock.acquire()
        try:
            if self._loaded != (model, pretrained):
                if say is not None:
                    shown = model if pretrained is None else f"{model} with weights {pretrained}"
                    say(f"Loading model {shown}")
                self.load(model, pretrained)
            yield self
        finally:
            self._lock.release()

    def knows(self, model: str, pretrained: str | None = None) -> bool:
        """Whether the CLIP ranker could load ``model`` (same answer in mock mode), from
        open_clip's catalog, ``model_configs`` and the ``checkpoints`` mapping."""
        return is_known(
            model,
            pretrained,
            extra_configs=[str(p) for p in self.options.get("model_configs") or []],
            checkpoints=self.options.get("checkpoints"),
        )

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    # -- embeddings and retrieval --------------------------------------------------------
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
