"""ROUGE-1/2/L exactly as ``rouge-chinese`` 1.0.3 scores ``Rouge().get_scores(hyp, ref)``.

The reference is fed ``" ".join(tokens)`` for both sides. What it then does, reproduced
here step for step:

1. ``Rouge.cut_sent``: four regexes insert ``\\n`` after a sentence end (a full-width
   full stop, exclamation or question mark, or ``?``, not followed by a closing quote; six
   dots; two ellipses; an end mark plus a closing quote), then ``rstrip`` and
   ``split("\\n")``.
2. Each non-empty sentence becomes ``" ".join(s.split())``; the words are every sentence's
   ``split(" ")``, concatenated. The sentence cut therefore changes the words only where it
   lands inside a token (a jieba token of seven dots: ``"......."`` becomes ``"......"``
   and ``"."``); we run the same string operations rather than reason about when it can.
3. ROUGE-N (``exclusive=True``, the default): the n-grams are *sets* over the concatenated
   words, so they run across sentence ends and a repeated n-gram counts once on each side.
   ``p = overlap/|hyp set|``, ``r = overlap/|ref set|`` (0 for an empty set), and
   ``f = 2 * (p*r / (p + r + 1e-8))`` -- so a perfect match scores 0.99999999..., not 1.
4. ROUGE-L (``rouge_l_summary_level``, which despite its name is one LCS over the whole
   word lists, with repeats): ``r = lcs/len(ref)``, ``p = lcs/len(hyp)``, the same ``f``.

The reference's LCS is a Python dict DP, O(n*m): a 6,000-character Chinese pair (~3,000
words a side) takes 15-60 s. Here the LCS is rapidfuzz's bit-parallel ``LCSseq``
(O(n*m/64) in C) over integer word ids, so the length is the same integer and every float
is computed with the same operations in the same order: the results are bit-identical.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

# rouge_chinese.rouge.Rouge.cut_sent, verbatim, with the full-width characters escaped:
# \u3002 ideographic full stop, \uff01 \uff1f full-width ! and ?, \uff0c full-width comma,
# \u201d \u2019 right double and single quotation marks, \u2026 horizontal ellipsis.
_END = "\u3002\uff01\uff1f\\?"
_CLOSE = "\u201d\u2019"
_CUT_RULES = (
    (re.compile(f"([{_END}])([^{_CLOSE}])"), r"\1\n\2"),
    (re.compile(f"(\\.{{6}})([^{_CLOSE}])"), r"\1\n\2"),
    (re.compile(f"(\u2026{{2}})([^{_CLOSE}])"), r"\1\n\2"),
    (re.compile(f"([{_END}][{_CLOSE}])([^\uff0c{_END}])"), r"\1\n\2"),
)


def rouge_words(tokens: Sequence[str]) -> list[str]:
    """The word list rouge-chinese scores for ``" ".join(tokens)`` (see step 1 and 2)."""
    text = " ".join(tokens)
    for pattern, replacement in _CUT_RULES:
        text = pattern.sub(replacement, text)
    words: list[str] = []
    for sentence in text.rstrip().split("\n"):
        if len(sentence) > 0:
            words.extend(" ".join(sentence.split()).split(" "))
    return words


def _f(overlap: int, hyp_count: int, ref_count: int) -> float:
    # rouge_score.f_r_p_rouge_n; rouge_l_summary_level computes the same expression
    # (its hyp/ref counts are never 0 there, so the guards do not differ).
    precision = 0.0 if hyp_count == 0 else overlap / hyp_count
    recall = 0.0 if ref_count == 0 else overlap / ref_count
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


def rouge_f(hyp_words: Sequence[str], ref_words: Sequence[str]) -> tuple[float, float, float]:
    """(rouge-1 f, rouge-2 f, rouge-l f) of two word lists from :func:`rouge_words`.

    Either list empty scores (0, 0, 0): rouge-chinese raises ``ValueError`` there, and the
    convention we document is that a case without tokens on one side scores 0.
    """
    if not hyp_words or not ref_words:
        return 0.0, 0.0, 0.0
    from rapidfuzz.distance import LCSseq

    ids: dict[str, int] = {}
    hyp = [ids.setdefault(w, len(ids)) for w in hyp_words]
    ref = [ids.setdefault(w, len(ids)) for w in ref_words]
    width = len(ids)

    hyp1, ref1 = set(hyp), set(ref)
    rouge_1 = _f(len(hyp1 & ref1), len(hyp1), len(ref1))

    # A bigram as one int (a * width + b) hashes faster than a tuple and is just as unique.
    hyp2 = {a * width + b for a, b in itertools.pairwise(hyp)}
    ref2 = {a * width + b for a, b in itertools.pairwise(ref)}
    rouge_2 = _f(len(hyp2 & ref2), len(hyp2), len(ref2))

    lcs = int(LCSseq.similarity(ref, hyp))
    r_lcs = lcs / len(ref)
    p_lcs = lcs / len(hyp)
    rouge_l = 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8))
    return rouge_1, rouge_2, rouge_l
