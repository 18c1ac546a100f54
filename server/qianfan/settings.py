"""The ``[qianfan]`` table, typed: every Qianfan setting and its one default."""

from __future__ import annotations

import msgspec


class QianfanSettings(msgspec.Struct, kw_only=True):
    """The ``[qianfan]`` table."""

    # Characters per dataset field (prompt, reference, prediction).
    max_field_chars: int = 4000
    # Cases per dataset.
    max_cases: int = 100_000
    # Seconds a signature's timestamp may lie outside [signed, signed + expiration].
    clock_skew_seconds: int = 300
    # The longest lifetime (the auth string's expiration) a signature may ask for: the
    # body is not signed, so a captured request replays with any body for that long.
    # bce-python-sdk's default expiration; Baidu documents no bound of its own. The
    # qianfan SDK signs for 300 s (QIANFAN_IAM_SIGN_EXPIRATION_SEC).
    max_expiration_seconds: int = 1800
    # Signed download URLs of exports live this long (seconds).
    url_expiry_seconds: int = 3600
    # Inference calls in flight per task.
    concurrency: int = 16
    # Model version (or model) id -> generation backend: a model name the judge engine
    # serves ([judge.models]); "" is the judge's own model (the mock in mock mode).
    models: dict[str, str] = msgspec.field(default_factory=dict)
    # The model name (as in [qianfan.models]) that generates for a model version id
    # [qianfan.models] does not map; "" refuses such ids at eval/create, in both modes,
    # so a task never runs a model nobody chose (mock mode maps amv-evaldock-mock itself).
    default_model: str = ""
    # Judge mode: the referee scale runs judge_min_score..prompt.maxScore (default below).
    judge_min_score: int = 1
    judge_max_score: int = 5
    # Characters of the referee prompt's metric and steps, each: the platform refuses
    # longer ones (200, bce-qianfan-sdk #404); evaldock refuses them at eval/create.
    max_prompt_chars: int = 200
    # Characters of the referee prompt's templateContent.
    max_template_chars: int = 4000
    # Manual mode: the top of a dimension's 0..top scale unless the dimension sets
    # maxScore (1, as the vendor's example report shows 0/1 scores).
    manual_max_score: int = 1
