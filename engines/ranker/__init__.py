"""Ranker engines: CLIP-style embeddings of texts and images, and top-k retrieval.

``mock`` (hashed tokens, no model) and ``clip`` (open_clip). Importing this package, the
mock or :mod:`.retrieval` never imports torch.
"""

from .base import Ranker, combine_fields, l2_normalise
from .retrieval import topk_cosine

__all__ = ["Ranker", "combine_fields", "l2_normalise", "topk_cosine"]
