"""The ``text_similarity`` metrics of OpenAI's graders, each computed by a named reference
library exactly as that library computes it (OpenAI never published its implementations:
these are evaldock's pinned choices, stated in every signature and in docs/openai.md).

- ``fuzzy_match``: ``rapidfuzz.fuzz.WRatio(input, reference,
  processor=rapidfuzz.utils.default_process) / 100`` (the form OpenAI's graders guide
  uses with rapidfuzz);
- ``bleu``: sacreBLEU ``sentence_bleu(input, [reference]).score / 100`` (at most 1) with
  its defaults (13a tokenizer, exp smoothing): an exact short answer scores 1.0, where
  unsmoothed NLTK BLEU gives 0 for anything under four tokens;
- ``gleu``: NLTK ``sentence_gleu([reference.split()], input.split())``;
- ``meteor``: NLTK ``meteor_score([reference.split()], input.split())`` with its
  defaults (alpha 0.9, beta 3, gamma 0.5, lower-casing, Porter stems); WordNet is not on
  the package index, so without a WordNet folder the synonym stage matches nothing
  (``wordnet:none`` in the signature);
- ``rouge_1`` .. ``rouge_5``, ``rouge_l``: ``rouge_score.rouge_scorer.RougeScorer([key],
  use_stemmer=False).score(reference, input)[key].fmeasure``;
- ``cosine``: the cosine of the embedder engine's vectors (:func:`cosine_scores`).

The libraries are imported on first use (sacreBLEU and NLTK take ~0.3 s to import).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evaldock.engines.protocols import Embedder
from evaldock.engines.signature import Signature

ROUGE = {f"rouge_{n}": f"rouge{n}" for n in range(1, 6)} | {"rouge_l": "rougeL"}
LIBRARY_METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", *ROUGE)
METRICS = (*LIBRARY_METRICS, "cosine")


class _NoWordNet:
    """Stands in for WordNet when none is installed: no word has synonyms, so METEOR's
    synonym stage matches nothing and the exact and stem stages decide alone."""

    def synsets(self, word: str, *args: Any, **kwargs: Any) -> list[Any]:
        return []


@functools.cache
def _wordnet(folder: str) -> Any:
    if not folder:
        return _NoWordNet()
    from nltk.corpus.reader.wordnet import WordNetCorpusReader  # type: ignore[import-untyped]

    return WordNetCorpusReader(folder, None)


@functools.cache
def _rouge_scorer(key: str) -> Any:
    from rouge_score import rouge_scorer  # type: ignore[import-untyped]

    return rouge_scorer.RougeScorer([key], use_stemmer=False)


def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils

    return float(fuzz.WRatio(text, reference, processor=utils.default_process)) / 100


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    # An exact match scores 100.00000000000004 in sacreBLEU 2.6 (float rounding): clamped.
    return min(1.0, float(sacrebleu.sentence_bleu(text, [reference]).score) / 100)


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu  # type: ignore[import-untyped]

    return float(sentence_gleu([reference.split()], text.split()))


def meteor(text: str, reference: str, wordnet_dir: str = "") -> float:
    from nltk.translate.meteor_score import meteor_score  # type: ignore[import-untyped]

    return float(meteor_score([reference.split()], text.split(), wordnet=_wordnet(wordnet_dir)))


def rouge(metric: str, text: str, reference: str) -> float:
    key = ROUGE[metric]
    return float(_rouge_scorer(key).score(reference, text)[key].fmeasure)


def scorer(metric: str, wordnet_dir: str = "") -> Callable[[str, str], float]:
    """``score(input, reference)`` of a library metric (``cosine`` needs an embedder:
    :func:`cosine_scores`). Raises KeyError for a metric not in :data:`LIBRARY_METRICS`."""
    if metric in ROUGE:
        return functools.partial(rouge, metric)
    if metric == "meteor":
        return functools.partial(meteor, wordnet_dir=wordnet_dir)
    return {"fuzzy_match": fuzzy_match, "bleu": bleu, "gleu": gleu}[metric]


def cosine_scores(
    embedder: Embedder, texts: Sequence[str], references: Sequence[str]
) -> list[float]:
    """Cosine of each (input, reference) pair's embeddings (one ``encode`` of all texts);
    a pair with a zero vector scores 0."""
    if not texts:
        return []
    vectors = np.asarray(embedder.encode([*texts, *references]), dtype=np.float64)
    a, b = vectors[: len(texts)], vectors[len(texts) :]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    out = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    # Rounding puts a vector's cosine with itself at 1.0000000000000002: clamped.
    return [float(v) for v in np.clip(out, -1.0, 1.0)]


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def signature(metric: str, wordnet_dir: str = "", embedder: str = "") -> Signature:
    """What computes ``metric``: the library, its version and the call's choices."""
    fields: dict[str, object] = {}
    if metric == "fuzzy_match":
        fields = {"lib": f"rapidfuzz-{_version('rapidfuzz')}", "fn": "WRatio+default_process"}
    elif metric == "bleu":
        fields = {"lib": f"sacrebleu-{_version('sacrebleu')}", "tok": "13a", "smooth": "exp"}
    elif metric in ("gleu", "meteor"):
        fields = {"lib": f"nltk-{_version('nltk')}", "tok": "split"}
        if metric == "meteor":
            fields["wordnet"] = "3.0" if wordnet_dir else "none (synonym stage skipped)"
    elif metric in ROUGE:
        fields = {"lib": f"rouge-score-{_version('rouge-score')}", "stem": False, "value": "f"}
    elif metric == "cosine":
        try:
            used = Signature.parse(embedder)
            fields = {
                "embedder": used.get(used.kind) or "unknown",
                "model": used.get("model") or "?",
            }
        except ValueError:
            fields = {"embedder": embedder or "unknown"}
    return Signature.of("metric", metric, **fields)
