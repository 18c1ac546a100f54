"""Spice's five built-in scorers, exactly as crates/runtime/src/model/eval/scorer/*.rs
define them; each case scores 0.0 or 1.0, except ``levenshtein`` (0.0..1.0).

Texts and choice lists (see :mod:`.values`):

- ``match``: text vs text is ``==`` (case-sensitive); choices vs choices is full struct
  equality (index, role, content, finish_reason, ...); text vs choices compares the text
  with the first choice's content ("" when there is none).
- ``json_match``, ``includes``, ``fuzzy_match``: each side is its list of contents (a text
  is a list of one, a missing content is ""); different lengths score 0, otherwise every
  pair in order must pass (so two empty choice lists score 1).
  ``json_match``: both parse as JSON (serde_json's rules: no NaN, no number beyond f64,
  no lone surrogate escapes, nesting under 128) and are deep-equal with every number
  compared as f64 (1 == 1.0; true != 1; key order irrelevant; array order matters).
  ``includes``: the output contains the ideal, raw and case-sensitive ("" is in
  everything). ``fuzzy_match``: see :mod:`.fuzzy`.
- ``levenshtein``: ``1 - distance / max(len)`` over Unicode scalar values (Rust ``chars``,
  which is what Python ``str`` indexes), 1.0 when both are empty; the texts are each
  side's text (first choice's content for a choice list). This is exactly rapidfuzz's
  ``Levenshtein.normalized_similarity`` (uniform weights), which computes it. Spice
  (crates/util/src/levenshtein.rs ``similarity``) runs the full two-row DP with no bound
  on the lengths; here a pair's work is bounded (:data:`LEVENSHTEIN_MAX_CELLS`, see
  :func:`levenshtein_similarity`): every pair gets Spice's exact number or
  :class:`PairTooLong`, never an approximation.

Batches (:func:`score_batch`) take two :class:`.values.Column`\\ s (or plain sequences,
converted once) and run in C where the rows are all text: ``match``/``includes`` are two
``map`` calls over ``operator``, ``levenshtein`` one ``map`` over rapidfuzz; the
JSON/fuzzy scorers normalise each distinct string once per batch. Rows holding a choice
list take the per-pair path.

Spice keeps scores as f32; these are Python floats (f64). ``levenshtein``'s value differs
from Spice's stored f32 by under 6e-8; the other four are exactly 0.0 or 1.0.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

from evaldock.engines.scorers import fuzzy
from evaldock.engines.scorers.values import Choices, Column, Output, Value

_similarity = Levenshtein.normalized_similarity
_distance = Levenshtein.distance
# The most DP cells one pair's edit distance may cost: 2^33 cells is ~0.3 s of rapidfuzz's
# bit-parallel DP on one core here (3.5e-11 s a cell: 100k x 100k chars took 0.4 s; two
# 1M-char texts, 10^12 cells, took 27-32 s before this bound). Pairs within it (texts up
# to ~92k chars each, or any length against a short one) are computed in full; longer
# pairs in a band of +-k around the diagonal with k = cells / (2 x longer length), exact
# whenever the distance is at most k (rapidfuzz's score_cutoff), else refused.
LEVENSHTEIN_MAX_CELLS = 1 << 33
_SERDE_MAX_DEPTH = 127  # serde_json's recursion limit: 128 nested arrays/objects fail
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _contents(value: Output) -> list[str]:
    return [value] if isinstance(value, str) else value.contents


def _text(value: Output) -> str:
    return value if isinstance(value, str) else value.text


# -- JSON as serde_json reads and compares it -----------------------------------------
class _Unparsable:
    """The result of a text that is not JSON: never equal to anything, itself included."""


_UNPARSABLE = _Unparsable()


def _finite(literal: str) -> float:
    value = float(literal)  # ints too: serde compares every number as f64 after parsing
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max(map(_depth, obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max(map(_depth, obj), default=0)
    return 0


def _has_surrogate(obj: Any) -> bool:
    if isinstance(obj, str):
        return _SURROGATE.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(map(_has_surrogate, obj))
    return False


def parse_json(text: str) -> Any:
    """The JSON value of ``text`` with numbers as floats, or ``_UNPARSABLE``."""
    try:
        value = json.loads(
            text, parse_float=_finite, parse_int=_finite, parse_constant=_no_constant
        )
    except (ValueError, RecursionError):
        return _UNPARSABLE
    # Rare shapes serde refuses and Python accepts; the cheap tests keep this off the
    # common path.
    if text.count("[") + text.count("{") > _SERDE_MAX_DEPTH and _depth(value) > _SERDE_MAX_DEPTH:
        return _UNPARSABLE
    if "\\u" in text and _LONE_SURROGATE_ESCAPE.search(text) and _has_surrogate(value):
        return _UNPARSABLE
    return value


def _strict_equal(a: Any, b: Any) -> bool:
    """serde_json ``Value`` equality: like ``==`` but a bool never equals a number."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(map(_strict_equal, a, b))
    return bool(a == b)


def json_equal(a: Any, b: Any) -> bool:
    if a is _UNPARSABLE or b is _UNPARSABLE:
        return False
    # Python's == is C-fast and only too lenient (True == 1.0): confirm the equal ones.
    return bool(a == b) and _strict_equal(a, b)


# -- one pair ----------------------------------------------------------------------------
def match(output: Output, ideal: Output) -> float:
    if isinstance(output, str) and isinstance(ideal, str):
        return float(output == ideal)
    if isinstance(output, Choices) and isinstance(ideal, Choices):
        return float(output == ideal)
    return float(_text(output) == _text(ideal))


def _all_pairs(output: Output, ideal: Output, test: Callable[[str, str], bool]) -> float:
    outs, ideals = _contents(output), _contents(ideal)
    if len(outs) != len(ideals):
        return 0.0
    return float(all(map(test, outs, ideals)))


def includes(output: Output, ideal: Output) -> float:
    return _all_pairs(output, ideal, operator.contains)


def _fuzzy_pair(a: str, b: str) -> bool:
    return fuzzy.matches(fuzzy.normalize(a), fuzzy.normalize(b))


def fuzzy_match(output: Output, ideal: Output) -> float:
    return _all_pairs(output, ideal, _fuzzy_pair)


def json_match(output: Output, ideal: Output) -> float:
    return _all_pairs(output, ideal, lambda a, b: json_equal(parse_json(a), parse_json(b)))


class PairTooLong(ValueError):
    """A ``levenshtein`` pair whose distance cannot be had within the work bound: texts
    so long that only distances up to ``cutoff`` are computed, and this one is larger."""

    def __init__(self, output_chars: int, ideal_chars: int, cutoff: int, max_cells: int) -> None:
        self.output_chars, self.ideal_chars, self.cutoff = output_chars, ideal_chars, cutoff
        self.row: int | None = None  # the pair's row in its batch, set by score_batch
        self.hint = "shorten the texts, or score these cases with fuzzy_match or includes (linear)"
        super().__init__(
            f"levenshtein: an output of {output_chars:,} characters and an ideal of "
            f"{ideal_chars:,} differ by more than {cutoff:,} edits, the most computed for "
            f"texts this long (an edit distance costs at most {max_cells:,} DP cells, "
            f"about 0.3 s, evaldock.engines.scorers.exact.LEVENSHTEIN_MAX_CELLS); {self.hint}"
        )


def levenshtein_similarity(a: str, b: str, max_cells: int = LEVENSHTEIN_MAX_CELLS) -> float:
    """Spice's ``1 - distance / max(len)`` for one pair, in at most ``max_cells`` DP cells.

    ``len(a) * len(b) <= max_cells``: the full distance. Longer: the distance in a band,
    exact when it is at most ``k = max_cells // (2 * longer)`` (rapidfuzz strips a common
    prefix and suffix first, so long texts that differ in a few places are cheap); a
    larger distance raises :class:`PairTooLong`.
    """
    m, n = len(a), len(b)
    if m * n <= max_cells:
        return float(_similarity(a, b))
    longest = max(m, n)
    cutoff = max_cells // (2 * longest)
    distance = _distance(a, b, score_cutoff=cutoff)
    if distance > cutoff:
        raise PairTooLong(m, n, cutoff, max_cells)
    return 1.0 - distance / longest  # rapidfuzz's own normalisation, bit for bit


def levenshtein(output: Output, ideal: Output) -> float:
    return levenshtein_similarity(_text(output), _text(ideal))


PAIR: dict[str, Callable[[Output, Output], float]] = {
    "match": match,
    "json_match": json_match,
    "includes": includes,
    "fuzzy_match": fuzzy_match,
    "levenshtein": levenshtein,
}


# -- batches -----------------------------------------------------------------------------
def _memo(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """``fn`` remembered for one batch: ideals and outputs repeat (labels, "yes"/"no")."""
    seen: dict[str, Any] = {}

    def get(text: str) -> Any:
        try:
            return seen[text]
        except KeyError:
            seen[text] = out = fn(text)
            return out

    return get


def _texts_match(a: Sequence[str], b: Sequence[str]) -> list[float]:
    return list(map(float, map(operator.eq, a, b)))


def _texts_includes(a: Sequence[str], b: Sequence[str]) -> list[float]:
    return list(map(float, map(operator.contains, a, b)))  # contains(a, b): b in a


def _texts_levenshtein(
    a: Sequence[str], b: Sequence[str], max_cells: int = LEVENSHTEIN_MAX_CELLS
) -> list[float]:
    # Short pairs (every batch but a hostile one): one C-level map, as before the bound.
    if max(map(operator.mul, map(len, a), map(len, b)), default=0) <= max_cells:
        return list(map(_similarity, a, b))
    scores = []
    for row, (x, y) in enumerate(zip(a, b, strict=True)):
        try:
            scores.append(levenshtein_similarity(x, y, max_cells))
        except PairTooLong as exc:
            exc.row = row
            raise
    return scores


def _texts_fuzzy(a: Sequence[str], b: Sequence[str]) -> list[float]:
    norm = _memo(fuzzy.normalize)
    return [float(fuzzy.matches(norm(x), norm(y))) for x, y in zip(a, b, strict=True)]


def _texts_json(a: Sequence[str], b: Sequence[str]) -> list[float]:
    parse = _memo(parse_json)
    return [float(json_equal(parse(x), parse(y))) for x, y in zip(a, b, strict=True)]


_TEXTS: dict[str, Callable[[Sequence[str], Sequence[str]], list[float]]] = {
    "match": _texts_match,
    "json_match": _texts_json,
    "includes": _texts_includes,
    "fuzzy_match": _texts_fuzzy,
    "levenshtein": _texts_levenshtein,
}
NAMES: tuple[str, ...] = tuple(PAIR)


def score_batch(
    name: str,
    outputs: Column | Iterable[Value],
    ideals: Column | Iterable[Value],
    levenshtein_max_cells: int = LEVENSHTEIN_MAX_CELLS,
) -> list[float]:
    """Scores of one built-in scorer, one per (output, ideal) row, in row order.

    Raises ``KeyError`` for a name that is not built in (the registry in
    :mod:`.registry` turns spicepod names into :class:`ScorerUnknown`), and
    :class:`PairTooLong` for a ``levenshtein`` pair past ``levenshtein_max_cells``.
    """
    texts_fn, pair_fn = _TEXTS[name], PAIR[name]
    out, ideal = Column.of(outputs), Column.of(ideals)
    if len(out) != len(ideal):
        raise ValueError(f"{len(out)} outputs but {len(ideal)} ideals: they pair row by row")
    if name == "levenshtein":  # reads only the texts, choice rows included
        return _texts_levenshtein(out.texts, ideal.texts, levenshtein_max_cells)
    scores = texts_fn(out.texts, ideal.texts)
    for i in out.choice_rows | ideal.choice_rows:
        scores[i] = pair_fn(out.values[i], ideal.values[i])
    return scores
