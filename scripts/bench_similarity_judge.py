"""How often the offline similarity judge agrees with hand labels, and the served model.

    .venv/bin/python scripts/bench_similarity_judge.py [--pairs FILE] [--no-similarity]

The pairs (``scripts/data/relevance_pairs.jsonl``, 54 query/product pairs labelled on
Objective's scale: 2 fully relevant, 1 partly, 0 irrelevant or contradicting) were
written for this measurement, not for tuning: 16 matches, 12 partial matches, 12
irrelevant pairs, and 14 where the words match but the object contradicts the query
(8 contradictions such as "solid shirts" vs a striped shirt, 6 negations such as "jacket
without hood" vs a hooded jacket). A label-0 contradiction is exactly what cosine
similarity cannot see, so the figures are broken down by kind.

With ``EVALDOCK_VLLM_URL`` set (and optionally ``EVALDOCK_VLLM_MODEL``), the served model
judges the same pairs through the ``openai`` judge, so the two paths are compared on the
same set. Agreement is exact (same label) and within one (never BAD for GREAT, or the
reverse). Judgements are not cached between runs (an in-memory cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaldock.engines.errors import EngineError
from evaldock.engines.protocols import RelevanceJudge

PAIRS = Path(__file__).parent / "data" / "relevance_pairs.jsonl"
KINDS = ("match", "partial", "irrelevant", "contradiction", "negation")


def load_pairs(path: Path = PAIRS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def agreement(labels: Sequence[int], verdicts: Sequence[int | None]) -> tuple[float, float]:
    """(exact, within one) as fractions of all pairs; a failed judgement (None) counts as
    a disagreement."""
    if not labels:
        return 0.0, 0.0
    exact = sum(v == y for y, v in zip(labels, verdicts, strict=True))
    near = sum(v is not None and abs(v - y) <= 1 for y, v in zip(labels, verdicts, strict=True))
    return exact / len(labels), near / len(labels)


async def judge_all(
    judge: RelevanceJudge, pairs: list[dict[str, Any]], concurrency: int
) -> list[int | None]:
    gate = asyncio.Semaphore(concurrency)

    async def one(pair: dict[str, Any]) -> int | None:
        async with gate:
            try:
                return (await judge.relevance(pair["query"], pair["object"])).score
            except EngineError as exc:
                print(f"  failed: {pair['query']!r}: {exc}", file=sys.stderr)
                return None

    return list(await asyncio.gather(*(one(p) for p in pairs)))


def report(name: str, pairs: list[dict[str, Any]], verdicts: list[int | None], took: float) -> None:
    labels = [int(p["label"]) for p in pairs]
    exact, near = agreement(labels, verdicts)
    print(f"\n{name}: {len(pairs)} pairs in {took:.1f}s")
    print(
        f"  agreement: exact {exact:.0%} ({round(exact * len(pairs))}/{len(pairs)}), "
        f"within one {near:.0%}"
    )
    for kind in KINDS:
        rows = [i for i, p in enumerate(pairs) if p["kind"] == kind]
        if rows:
            got = Counter(verdicts[i] for i in rows)
            e, n = agreement([labels[i] for i in rows], [verdicts[i] for i in rows])
            spread = ", ".join(
                f"{k if k is not None else 'failed'}: {c}"
                for k, c in sorted(got.items(), key=lambda kv: -1 if kv[0] is None else kv[0])
            )
            print(
                f"  {kind:<13} label {labels[rows[0]]}: exact {e:>4.0%}, within one "
                f"{n:>4.0%}  (judged {spread})"
            )
    confusion = Counter(zip(labels, verdicts, strict=True))
    print("  label → judged   0    1    2  failed")
    for y in (0, 1, 2):
        cells = [confusion[(y, v)] for v in (0, 1, 2, None)]
        print(f"  {y:>5}        " + "".join(f"{c:>5}" for c in cells))


async def run(judge: Any, pairs: list[dict[str, Any]], concurrency: int) -> tuple[list, float]:
    try:
        if hasattr(judge, "check"):
            await judge.check()
        t0 = time.perf_counter()
        verdicts = await judge_all(judge, pairs, concurrency)
        return verdicts, time.perf_counter() - t0
    finally:
        await judge.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    parser.add_argument("--no-similarity", action="store_true", help="only the served model")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)
    print(
        f"{len(pairs)} labelled pairs from {args.pairs}: {dict(Counter(p['kind'] for p in pairs))}"
    )

    if not args.no_similarity:
        from evaldock.engines.judge.similarity import SimilarityJudge

        judge = SimilarityJudge({})
        verdicts, took = asyncio.run(run(judge, pairs, args.concurrency))
        report(f"similarity judge ({judge.signature})", pairs, verdicts, took)

    url = os.environ.get("EVALDOCK_VLLM_URL", "")
    if url:
        from evaldock.engines.judge.openai import OpenAIJudge

        served = OpenAIJudge(
            {"urls": [url], "model": os.environ.get("EVALDOCK_VLLM_MODEL", ""), "timeout": 300}
        )
        verdicts, took = asyncio.run(run(served, pairs, args.concurrency))
        report(f"served model ({served.signature})", pairs, verdicts, took)
    else:
        print("\n(set EVALDOCK_VLLM_URL to measure a served model on the same pairs)")


if __name__ == "__main__":
    main()
