"""The evaluation modes' settings, checked at eval/create: ``rule`` (which metrics
``scoreModes`` selects), ``model`` (the referee prompt) and ``manual`` (the scales).

Rule mode: engines/text_metrics over the inferred cases; ``scoreModes`` "accuracy" shows
accuracy, "similarity" f1Score, rouge_1/2/l and bleu4 (both when none is named).

Judge mode: every successfully inferred case is scored by the judge engine's ``score``
with the task's referee prompt (``templateContent`` with its ``{slots}``, ``metric``,
``steps``, ``maxScore``) and ``evaluationDimension``s on ``[qianfan] judge_min_score``
..``maxScore``; a case the judge cannot grade is stored as -1 (the report's invalid
bucket) with the judge's reason.

Manual mode: after the automatic parts the task waits (``DoingWithManualBegin``); people
submit per (model version, case, dimension) an integer on the dimension's scale
(0..``[qianfan] manual_max_score``, 1 by default as the vendor's example report shows,
or the dimension's own ``maxScore``) or -1, plus a ``subjectiveImpression`` per model
version, through ``/wenxinworkshop/evaldock/eval/manual/score`` (or ``evaldock qianfan
score``). A final call, or the last missing score, resumes the task, which then ends.

The job that runs them is :meth:`QianfanBackend.run_eval` (backend.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import jsonio
from .errors import param_invalid

SIMILARITY_KEYS = ("f1Score", "rouge_1", "rouge_2", "rouge_l", "bleu4")
DEFAULT_DIMENSION = "满意度"  # satisfaction: the first dimension of the vendor's example


@dataclass(frozen=True)
class JudgeConfig:
    template: str | None
    metric: str
    steps: str
    min_score: int
    max_score: int
    dimensions: list[Mapping[str, str]]

    def variables(self, prompt: str, output: str, reference: str) -> dict[str, Any]:
        """The slots a Qianfan referee template may name (the console's own names and
        the engine's: ``{src}``/``{input}``, ``{prediction}``/``{output}``, ...)."""
        return {
            "input": prompt,
            "src": prompt,
            "prompt": prompt,
            "output": output,
            "prediction": output,
            "reference": reference,
            "tgt": reference,
            "metric": self.metric,
            "steps": self.steps,
            "max_score": self.max_score,
            "min_score": self.min_score,
        }

    @property
    def version(self) -> str:
        """A short hash of everything that shapes the referee's prompt (its version)."""
        text = jsonio.encode(
            [
                self.template,
                self.metric,
                self.steps,
                self.min_score,
                self.max_score,
                self.dimensions,
            ]
        )
        return hashlib.sha256(text).hexdigest()[:12]


def _dimensions(conf: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(d) for d in conf.get("evaluationDimension") or []]


def judge_config(
    conf: Mapping[str, Any], min_score: int, default_max: int, max_chars: int, max_template: int
) -> JudgeConfig:
    """The referee settings of ``evalStandardConf``, checked at create (not at run time:
    a too-long prompt failing only mid-run is the complaint in bce-qianfan-sdk #404)."""
    prompt = conf.get("prompt") or {}
    if not isinstance(prompt, Mapping):
        raise param_invalid("evalStandardConf.prompt", "must be an object")
    limits = {"metric": max_chars, "steps": max_chars, "templateContent": max_template}
    for key, limit in limits.items():
        value = prompt.get(key)
        if value is not None and not isinstance(value, str):
            raise param_invalid(f"evalStandardConf.prompt.{key}", "must be a string")
        if value is not None and len(value) > limit:
            raise param_invalid(
                f"evalStandardConf.prompt.{key}",
                f"is {len(value)} characters; the referee prompt allows at most {limit}",
            )
    raw_max = prompt.get("maxScore", default_max)
    try:
        max_score = int(raw_max)
    except (TypeError, ValueError):
        raise param_invalid("evalStandardConf.prompt.maxScore", "must be an integer") from None
    if not min_score <= max_score <= 100:
        raise param_invalid(
            "evalStandardConf.prompt.maxScore",
            f"{max_score} is outside {min_score}..100 (the scale starts at [qianfan] "
            "judge_min_score)",
        )
    dims: list[Mapping[str, str]] = [
        {"dimension": str(d["dimension"]), "description": str(d.get("description") or "")}
        for d in _dimensions(conf)
    ]
    return JudgeConfig(
        template=prompt.get("templateContent") or None,
        metric=prompt.get("metric") or "",
        steps=prompt.get("steps") or "",
        min_score=min_score,
        max_score=max_score,
        dimensions=dims,
    )


def manual_scales(conf: Mapping[str, Any], default_top: int) -> dict[str, int]:
    """Each manual dimension -> the top of its 0..top scale (report order)."""
    dims = _dimensions(conf) or [{"dimension": DEFAULT_DIMENSION}]
    scales: dict[str, int] = {}
    for i, d in enumerate(dims):
        top = d.get("maxScore", default_top)
        if not isinstance(top, int) or isinstance(top, bool) or not 1 <= top <= 100:
            raise param_invalid(
                f"evalStandardConf.evaluationDimension[{i}].maxScore", "must be an integer 1..100"
            )
        name = str(d["dimension"])
        if name in scales:
            raise param_invalid(
                f"evalStandardConf.evaluationDimension[{i}].dimension", f"{name} is repeated"
            )
        scales[name] = top
    return scales


def selected_metrics(score_modes: list[str] | None) -> set[str]:
    """``scoreModes`` -> report keys computed: accuracy for "accuracy", the rest for
    "similarity"; both when the request names none."""
    modes = set(score_modes or ("similarity", "accuracy"))
    keys: set[str] = set()
    if "accuracy" in modes:
        keys.add("accuracy")
    if "similarity" in modes:
        keys.update(SIMILARITY_KEYS)
    return keys
