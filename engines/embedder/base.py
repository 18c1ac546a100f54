"""The embedder interface both implementations (mock, sentence-transformers) serve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Texts to vectors.

    ``encode`` is synchronous and CPU/GPU-bound: async callers run it in a worker thread
    (``await asyncio.to_thread(embedder.encode, texts)``). One caller at a time; the model
    loads once, on ``check()`` or the first ``encode``.
    """

    name: str  # the implementation, e.g. "sentence-transformers"
    model: str  # the model that really ran, e.g. "all-MiniLM-L6-v2"
    signature: str  # what produced the vectors, reproducibly

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """float32 array of shape (len(texts), dimension), in the order given."""
        ...

    async def check(self) -> None:
        """Load the model now, or raise ``EngineUnavailable`` naming the fix."""
        ...

    async def aclose(self) -> None: ...
