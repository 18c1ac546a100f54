"""Word tokens for the rule metrics: a private jieba 0.42.1 tokenizer.

Convention: ``[t for t in tokenizer.cut(text) if t.strip()]`` -- accurate mode, HMM on
(jieba's defaults), the default dictionary; whitespace tokens dropped. English goes
through the same path (jieba keeps runs of ASCII letters/digits as one token).

The tokenizer is our own ``jieba.Tokenizer()``, never ``jieba.dt`` (the process-wide one
that ``jieba.cut`` uses and other code may load a user dictionary into), and its prefix
dictionary cache goes under a directory the caller names (the server's data directory),
not the system temp dir where jieba puts it by default. Building the prefix dictionary
from the bundled dict.txt takes ~1.5 s on one core; loading the cache ~0.5 s. The cache
file name carries the jieba version because jieba loads a default-dictionary cache
without checking its age.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

EXPECTED_JIEBA = "0.42.1"


def jieba_version() -> str:
    import jieba

    return str(getattr(jieba, "__version__", "unknown"))


class JiebaTokens:
    """Thread-safe, lazily loaded jieba word tokenizer with its cache in ``cache_dir``."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                import jieba

                self.cache_dir.mkdir(parents=True, exist_ok=True)
                tokenizer = jieba.Tokenizer()
                tokenizer.tmp_dir = str(self.cache_dir)
                tokenizer.cache_file = f"jieba-{jieba_version()}-default.cache"
                tokenizer.initialize()
                self._tokenizer = tokenizer
            return self._tokenizer

    def warm(self) -> None:
        """Load the dictionary now (the first :meth:`cut` would, ~0.5-1.5 s)."""
        self._load()

    def cut(self, text: str) -> list[str]:
        tokenizer = self._tokenizer or self._load()
        return [t for t in tokenizer.cut(text) if t.strip()]
