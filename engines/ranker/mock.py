"""A deterministic ranker with no model: bags of hashed tokens. Imports no torch.

Every token gets a fixed pseudo-random Gaussian vector (seeded by blake2b of the model name
and the token); a text is the sum of its tokens' vectors plus a smaller vector for the
whole string, L2-normalised. Texts sharing words therefore score higher, and distinct
strings never tie exactly.

Images are embedded from their *reference*, never their pixels: the words of a path or
URL's file name ("img/red-shirt.jpg" -> red, shirt), or a hash of a ``data:`` URI's payload. So mock
evaluations need no image files and accept ``http(s)://`` references (nothing is
fetched), and a text "red shirt" lands near an image named ``red_shirt.png``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

from evaldock.engines.signature import Signature

from .base import FieldRanker, l2_normalise

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# File-name noise that would make every image look alike.
_IMAGE_NOISE = frozenset(
    ("jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "http", "https", "www", "com")
)
_STRING_WEIGHT = 0.5  # the whole-string vector, relative to one token's
# Token vectors memoised (2 KiB each at 512 dimensions: 64 MiB). A dataset's vocabulary
# is mostly a few thousand shared words plus one-off tokens (ids, file numbers) that would
# fill any bound: the old 200,000 held 400 MB by 100,000 rows. Whole-string vectors are
# never memoised (combine_fields embeds each distinct value once per call already).
_CACHED_TOKENS = 32_768


class MockRanker(FieldRanker):
    """Options: ``dim`` (512), ``model``/``pretrained`` (loaded at once), and the CLIP
    ranker's ``model_configs``/``checkpoints``, so :meth:`knows` answers as it would."""

    implementation = "mock"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self.dim = int(options.get("dim", 512))
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")
        self._vectors: dict[str, np.ndarray] = {}
        self.load(str(options.get("model") or "evaldock-mock-clip"), options.get("pretrained"))

    def _load(self, model: str, pretrained: str | None) -> None:
        self.model_name = model
        self.pretrained = pretrained
        # Different models must give different spaces, as real ones do.
        self._salt = f"{model}\x00{pretrained or ''}\x00".encode()
        self._vectors = {}
        self.signature = Signature.of(
            "ranker",
            "mock",
            model=model,
            pretrained=pretrained or "-",
            dim=self.dim,
            embed="hashed-tokens-v1",
        ).format()

    def _vector(self, token: str, cache: bool = True) -> np.ndarray:
        vec = self._vectors.get(token) if cache else None
        if vec is None:
            digest = hashlib.blake2b(self._salt + token.encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            vec = rng.standard_normal(self.dim, dtype=np.float32)
            if cache and len(self._vectors) < _CACHED_TOKENS:
                self._vectors[token] = vec
        return vec

    def _embed(self, tokens: list[str], whole: str) -> np.ndarray:
        out = _STRING_WEIGHT * self._vector("\x01" + whole, cache=False)
        for token in tokens:
            out = out + self._vector(token)
        return out

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._embed(_WORD.findall(text.lower()), text)
        return l2_normalise(out)

    def embed_images(self, refs: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(refs), self.dim), dtype=np.float32)
        for i, ref in enumerate(refs):
            out[i] = self._embed(image_tokens(ref), "image\x00" + ref)
        return l2_normalise(out)


def image_tokens(ref: str) -> list[str]:
    """Words naming an image reference (see the module docstring)."""
    ref = ref.strip()
    if ref[:5].lower() == "data:":
        return ["data:" + hashlib.blake2b(ref.encode(), digest_size=16).hexdigest()]
    path = unquote(urlsplit(ref).path) if "://" in ref else ref
    # The file name carries the meaning; directories are shared by every image.
    name = path.replace("\\", "/").rstrip("/").rpartition("/")[2]
    return [w for w in _WORD.findall(name.lower()) if w not in _IMAGE_NOISE]


if TYPE_CHECKING:  # mypy proves the class serves what the server calls
    from evaldock.engines.protocols import Ranker

    def _ranker(engine: MockRanker) -> Ranker:
        return engine
