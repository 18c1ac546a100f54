"""Benchmark Spice's text scorers against the obvious Python, and check they agree.

Generates ``--pairs`` (output, ideal) text pairs (sentences from a small vocabulary with
accents, CJK, emoji, an NFD "thé" and ZWJ; ideals are 30% the output, 30% the output with
a few edits and changed case/punctuation, 40% another sentence), then times:

* ``levenshtein``: ours (:func:`score_batch` from plain lists, and from :class:`Column`\\ s
  parsed once and shared by every scorer) vs rapidfuzz's
  ``Levenshtein.normalized_similarity`` called per pair. Every number must be identical.
* ``fuzzy_match``: ours vs a straightforward transcription of FuzzyMatch::normalize with
  ``re`` and ``str`` methods (Python's ``\\b`` and ``str.split()``). Rows where that
  transcription disagrees with the Rust semantics ours implements (combining marks and ZWJ
  are word characters in Rust's ``\\b``) are counted, never hidden.

Each timing is the best of ``--repeat`` round-robin runs (shared machines are noisy); the
ratio is
reference time / our time, i.e. our throughput relative to the reference's.

    .venv/bin/python scripts/bench_scorers.py
    .venv/bin/python scripts/bench_scorers.py --pairs 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import random
import re
import string
import time
from collections.abc import Callable
from typing import Any

from rapidfuzz.distance import Levenshtein

from evaldock.engines.scorers import Column, score_batch

_WORDS = "the a an answer is Paris capital of France 42 quick brown fox jumps over lazy dog"
_MORE = "café naïve résumé 東京 日本語 首都 🎉 👍 emoji data model eval score"
VOCAB = [*_WORDS.split(), *_MORE.split(), "the\u0301", "co\u200dop"]  # NFD "thé"; a ZWJ


def sentence(rng: random.Random) -> str:
    words = [rng.choice(VOCAB) for _ in range(rng.randint(1, 14))]
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(("", ".", "!", "?"))


def edited(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(chars) + 1)
        op = rng.random()
        if op < 0.4 and i < len(chars):
            chars[i] = rng.choice("abcxyz ,.é日")
        elif op < 0.7:
            chars.insert(i, rng.choice("abc ,.!-"))
        elif i < len(chars):
            del chars[i]
    out = "".join(chars)
    return out.upper() if rng.random() < 0.2 else out


def make_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    outputs, ideals = [], []
    for _ in range(n):
        out = sentence(rng)
        r = rng.random()
        ideal = out if r < 0.3 else edited(rng, out) if r < 0.6 else sentence(rng)
        outputs.append(out)
        ideals.append(ideal)
    return outputs, ideals


# -- the references -------------------------------------------------------------------
def reference_levenshtein(outputs: list[str], ideals: list[str]) -> list[float]:
    return [Levenshtein.normalized_similarity(o, i) for o, i in zip(outputs, ideals, strict=True)]


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def reference_normalize(s: str) -> str:
    """FuzzyMatch::normalize, line by line."""
    lower = s.lower()
    no_punct = "".join(c for c in lower if not (c.isascii() and c in string.punctuation))
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())


def reference_fuzzy(outputs: list[str], ideals: list[str]) -> list[float]:
    scores = []
    for o, i in zip(outputs, ideals, strict=True):
        a, b = reference_normalize(o), reference_normalize(i)
        if not a or not b:
            scores.append(float(a == b))
        else:
            scores.append(float(a in b or b in a))
    return scores


def timed(variants: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, Any]]:
    """Best time and result of each variant, run round-robin so load spikes hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, fn in variants.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(times[name]), results[name]) for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args()

    outputs, ideals = make_pairs(args.pairs, args.seed)
    score_batch("fuzzy_match", ["é"], ["é"])  # build Rust's \w class once (~0.2 s), untimed

    cols = Column.of(outputs), Column.of(ideals)
    run = timed(
        {
            "ref_lev": lambda: reference_levenshtein(outputs, ideals),
            "lev": lambda: score_batch("levenshtein", outputs, ideals),
            "lev_col": lambda: score_batch("levenshtein", *cols),
            "ref_fz": lambda: reference_fuzzy(outputs, ideals),
            "fz": lambda: score_batch("fuzzy_match", outputs, ideals),
        },
        args.repeat,
    )
    (t_ref_lev, ref_lev), (t_lev, lev), (t_lev_col, lev_col) = (
        run["ref_lev"],
        run["lev"],
        run["lev_col"],
    )
    assert lev == ref_lev and lev_col == ref_lev, "levenshtein differs from rapidfuzz"
    (t_ref_fz, ref_fz), (t_fz, fz) = run["ref_fz"], run["fz"]
    differ = sum(a != b for a, b in zip(fz, ref_fz, strict=True))

    rows = [
        ("levenshtein, plain lists", t_lev, t_ref_lev, "identical"),
        ("levenshtein, Columns", t_lev_col, t_ref_lev, "identical"),
        ("fuzzy_match, plain lists", t_fz, t_ref_fz, f"{differ} rows differ (Rust \\b)"),
    ]
    print(f"{args.pairs:,} pairs, best of {args.repeat}; ratio = reference time / ours")
    print(f"| {'scorer':<26} | {'ours (s)':>8} | {'reference (s)':>13} | {'ratio':>6} | agreement")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 15}|{'-' * 8}|{'-' * 30}")
    for name, ours, ref, agreement in rows:
        print(f"| {name:<26} | {ours:8.3f} | {ref:13.3f} | {ref / ours:5.2f}x | {agreement}")
    print(f"fuzzy_match mean: ours {sum(fz) / len(fz):.4f}, reference {sum(ref_fz) / len(fz):.4f}")


if __name__ == "__main__":
    main()
