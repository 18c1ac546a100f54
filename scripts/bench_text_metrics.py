"""Benchmark the rule-metrics engine against the reference pipeline, and check they agree.

Generates ``--n`` Chinese and ``--n`` English (prediction, reference) pairs (edits of the
reference: dropped, inserted, swapped, repeated words; some identical, unrelated or
empty; references of 1-40 words), then scores them twice in the same run:

* ours: :class:`TextMetrics` -- jieba once per text, the tokens shared by F1 and ROUGE,
  rouge-chinese's definitions with a bit-parallel LCS, NLTK's BLEU on substrings;
* reference (tests/engines/text_metrics_reference.py): what independent code does with
  the libraries -- jieba for ROUGE and again for F1, ``rouge_chinese.Rouge().get_scores``
  (a Python dict LCS), ``nltk`` ``sentence_bleu`` with method3, Counter F1.

Both tokenizers load their dictionary before the clock starts. Every per-case value and
every mean must agree within 1e-9 (they are in fact bit-identical); the script asserts
it and prints the timings (CPU seconds) and the ratio. ``--long`` adds one
6,000-character pair, where rouge-chinese's quadratic LCS dominates (15-60 s).

    .venv/bin/python scripts/bench_text_metrics.py            # 20,000 + 20,000 pairs
    .venv/bin/python scripts/bench_text_metrics.py --n 2000 --long
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaldock.engines.text_metrics import METRIC_KEYS, TextMetrics  # noqa: E402
from tests.engines.text_metrics_reference import ReferenceMetrics, generate_pairs  # noqa: E402

TOL = 1e-9


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of this process: both sides are single-threaded, and on a shared machine
    wall time swings 2x with the neighbours' load while CPU time barely moves."""
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def compare(
    ours: list[dict[str, float]], reference: list[dict[str, float]], pairs: list[tuple[str, str]]
) -> None:
    for mine, theirs, pair in zip(ours, reference, pairs, strict=True):
        for key in METRIC_KEYS:
            if abs(mine[key] - theirs[key]) > TOL:
                raise SystemExit(f"MISMATCH {key}: ours {mine[key]!r} ref {theirs[key]!r} {pair!r}")


def run(lang: str, n: int, seed: int, engine: TextMetrics, reference: ReferenceMetrics) -> None:
    pairs = generate_pairs(n, lang, seed=seed)
    chars = sum(len(p) + len(r) for p, r in pairs)
    ours_s, ours_cases = timed(lambda: engine.per_cases(pairs))
    ours_means = engine.aggregate(ours_cases)
    ref_s, ref_cases = timed(lambda: [reference.per_case(p, r) for p, r in pairs])
    ref_means = reference.mean(ref_cases)
    compare([c.as_dict() for c in ours_cases], ref_cases, pairs)
    for key in METRIC_KEYS:
        assert abs(ours_means[key] - ref_means[key]) <= TOL, key
    identical = all(c.as_dict() == r for c, r in zip(ours_cases, ref_cases, strict=True))
    means = " ".join(f"{k}={ours_means[k]:.4f}" for k in METRIC_KEYS)
    print(
        f"{lang:>3} n={n:<6} chars={chars:<8} ours {ours_s:6.2f} s  reference {ref_s:6.2f} s CPU  "
        f"ratio {ref_s / ours_s:5.1f}x  agree<=1e-9: yes  bit-identical: "
        f"{'yes' if identical else 'no'}\n    {means}"
    )


def run_long(engine: TextMetrics, reference: ReferenceMetrics) -> None:
    pairs = generate_pairs(400, "zh", seed=7)
    prediction = "".join(p for p, _ in pairs)[:6000]
    ref_text = "".join(r for _, r in pairs)[:6000]
    ours_s, ours = timed(lambda: engine.per_case(prediction, ref_text).as_dict())
    ref_s, theirs = timed(lambda: reference.per_case(prediction, ref_text))
    compare([ours], [theirs], [(prediction[:20], ref_text[:20])])
    print(
        f"long pair 6,000 + 6,000 chars: ours {ours_s:.3f} s  reference {ref_s:.1f} s  "
        f"ratio {ref_s / ours_s:.0f}x  rouge_l={ours['rouge_l']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="pairs per language")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long", action="store_true", help="also one 6,000-char pair")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-jieba-") as tmp:
        engine = TextMetrics(Path(tmp) / "ours")
        reference = ReferenceMetrics(Path(tmp))
        load_s, _ = timed(engine.warm)
        reference.tokens("预热")
        print(f"jieba dictionary load (ours, cold cache): {load_s:.2f} s; not timed below")
        for lang in ("zh", "en"):
            run(lang, args.n, args.seed, engine, reference)
        if args.long:
            run_long(engine, reference)


if __name__ == "__main__":
    main()
