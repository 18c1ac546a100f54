"""Ranker engines: CLIP-style embeddings of texts and images, and top-k retrieval.

``mock`` (hashed tokens, no model) and ``clip`` (open_clip). The interface is
:class:`evaldock.engines.protocols.Ranker`. Importing this package, the mock,
:mod:`.retrieval` or :mod:`.catalog` never imports torch.
"""

from .base import combine_fields, l2_normalise
from .retrieval import topk_cosine

IMPLEMENTATIONS: dict[str, str] = {
    "mock": "evaldock.engines.ranker.mock:MockRanker",
    "clip": "evaldock.engines.ranker.clip:ClipRanker",
}
REAL_DEFAULT = "clip"
# Rankers compute: they are built in the worker processes, never in the API process.
PROCESS = "worker"

__all__ = ["IMPLEMENTATIONS", "REAL_DEFAULT", "combine_fields", "l2_normalise", "topk_cosine"]
