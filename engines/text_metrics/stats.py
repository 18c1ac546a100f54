"""Statistics of judge-model scores and of manual (human) scores, as the vendor reports them.

Shapes follow the Qianfan evaluation report (``effectMetric``):

* judge mode: ``avgJudgeScore``, ``stdJudgeScore`` (population standard deviation),
  ``medianJudgeScore`` (mean of the middle two for an even count) and
  ``scoreDistribution``: a count for every integer from the prompt's minimum to its
  maximum score, zero counts included, plus ``"-1"`` -- the vendor's "invalid score"
  bucket -- for cases the judge did not score (``None`` or -1) or scored off the scale.
  Those cases are left out of the three statistics.
* manual mode: ``manualAvgScore`` (mean of every scored value, all dimensions pooled),
  ``goodCaseProportion`` (the vendor types it ``int``: a percentage 0-100 of the scored
  cases whose every scored dimension is at the top of its scale) and
  ``manualScoreDistribution``: per dimension, ``"-1"`` (unscored) and each score seen.

Rounding, as the vendor's example report shows it (seeds/003: one case scored 1 and 0 on
two dimensions, two unscored -> ``manualAvgScore`` 0.5, ``goodCaseProportion`` 0): floats
are not rounded; ``goodCaseProportion`` is rounded half up to an integer (2 of 3 -> 67,
1 of 8 -> 13). With nothing scored every statistic is 0, as the vendor reports modes
that did not run.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TypedDict

UNSCORED = -1
UNSCORED_KEY = str(UNSCORED)


class JudgeStats(TypedDict):
    avgJudgeScore: float
    stdJudgeScore: float
    medianJudgeScore: float
    scoreDistribution: dict[str, int]


class DimensionDistribution(TypedDict):
    dimension: str
    scoreDistribution: dict[str, int]


class ManualStats(TypedDict):
    manualAvgScore: float
    goodCaseProportion: int
    manualScoreDistribution: list[DimensionDistribution]


def _mean_std_median(values: Sequence[int]) -> tuple[float, float, float]:
    if not values:
        return 0.0, 0.0, 0.0
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    return mean, std, float(statistics.median(values))


def judge_stats(scores: Sequence[int | None], min_score: int, max_score: int) -> JudgeStats:
    """Statistics of one run's judge scores on the integer scale ``min_score..max_score``."""
    if not 0 <= min_score <= max_score:
        raise ValueError(
            f"judge scale {min_score}..{max_score} is invalid: it needs 0 <= min <= max "
            "(-1 is the unscored bucket)"
        )
    valid = [s for s in scores if s is not None and min_score <= s <= max_score]
    counts = Counter(valid)
    distribution = {UNSCORED_KEY: len(scores) - len(valid)}
    distribution.update({str(s): counts[s] for s in range(min_score, max_score + 1)})
    mean, std, median = _mean_std_median(valid)
    return JudgeStats(
        avgJudgeScore=mean,
        stdJudgeScore=std,
        medianJudgeScore=median,
        scoreDistribution=distribution,
    )


def percent_half_up(part: int, whole: int) -> int:
    """``round(100 * part / whole)`` with halves rounded up, in integers (0 for whole 0)."""
    if whole <= 0:
        return 0
    return (200 * part + whole) // (2 * whole)


def manual_stats(
    cases: Sequence[Mapping[str, int | None]], dimensions: Mapping[str, int]
) -> ManualStats:
    """Statistics of manual scores.

    ``cases``: per case, dimension name -> score; a missing dimension, ``None`` or -1 means
    not scored. ``dimensions``: each dimension (in report order) -> the top of its scale.
    A case is scored when at least one dimension is; it is good when every dimension
    scored in it has the top score.
    """
    unknown = {d for case in cases for d in case} - set(dimensions)
    if unknown:
        raise ValueError(
            f"scores for undeclared dimensions {sorted(unknown)}: declare them with their "
            f"top score (declared: {list(dimensions)})"
        )
    pooled: list[int] = []
    per_dimension: dict[str, Counter[int]] = {d: Counter() for d in dimensions}
    scored_cases = good_cases = 0
    for case in cases:
        scored = {d: s for d in dimensions if (s := case.get(d)) is not None and s != UNSCORED}
        for d in dimensions:
            per_dimension[d][scored.get(d, UNSCORED)] += 1
        if scored:
            scored_cases += 1
            pooled.extend(scored.values())
            good_cases += all(s == dimensions[d] for d, s in scored.items())
    distributions = [
        DimensionDistribution(
            dimension=d,
            scoreDistribution={
                UNSCORED_KEY: counts.pop(UNSCORED, 0),
                **{str(s): counts[s] for s in sorted(counts)},
            },
        )
        for d, counts in per_dimension.items()
    ]
    return ManualStats(
        manualAvgScore=math.fsum(pooled) / len(pooled) if pooled else 0.0,
        goodCaseProportion=percent_half_up(good_cases, scored_cases),
        manualScoreDistribution=distributions,
    )
