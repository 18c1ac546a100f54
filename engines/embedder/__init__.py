"""Embedder engines: text in, one float32 vector per text out.

Spice's embedding scorers (``1/(1 + L2)`` between an answer and its ideal) and Oxen's
prompt-over-rows embeddings use them. ``mock`` (hashed tokens, numpy only) and
``sentence-transformers`` (the packaged all-MiniLM-L6-v2 by default). Importing this
package or the mock never imports torch.
"""

from evaldock.engines.embedder.base import Embedder

# The engine registry reads these two names: implementation name -> "module:Class".
IMPLEMENTATIONS: dict[str, str] = {
    "mock": "evaldock.engines.embedder.mock:MockEmbedder",
    "sentence-transformers": "evaldock.engines.embedder.sentence:SentenceTransformerEmbedder",
}
REAL_DEFAULT = "sentence-transformers"
# Embedders compute: they are built in the worker processes, never in the API process.
PROCESS = "worker"

__all__ = ["IMPLEMENTATIONS", "REAL_DEFAULT", "Embedder"]
