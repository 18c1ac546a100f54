"""The ``[openai]`` table: the surface's typed settings (one default, one place)."""

from __future__ import annotations

import msgspec


class OpenAISettings(msgspec.Struct, kw_only=True):
    """The ``[openai]`` table."""

    # Largest file POST /files takes: OpenAI's own limit per file is 512 MB.
    max_upload_bytes: int = 512 * 1024 * 1024
    # Rows one run may grade (10,000 rows x string_check, fuzzy_match and bleu grade in
    # ~6 s on one core: 200,000 rows are about two minutes of one worker).
    max_rows: int = 200_000
    # A WordNet 3.0 folder (Debian's wordnet-base, laid out as nltk's corpora/wordnet) for
    # METEOR's synonym stage; empty: the stage is skipped, and signatures say so.
    wordnet_dir: str = ""
    # python graders run the grader's source as the server's user (its files, its
    # network): any key holder could run code here, so they are off unless turned on.
    python_graders: bool = False
    # A python criterion's limits for its whole run (one worker task): OpenAI's hosted
    # grader limits, 2 minutes wall and 2 GB of memory.
    python_grader_seconds: float = 120.0
    python_grader_memory_mb: int = 2048
    # Judge calls in flight per run (generation and model graders; the judge's own
    # [judge] concurrency caps the total): Spice's and Oxen's are 32 and 64.
    concurrency: int = 32
    # report_url is a signed link that opens the run's report without the API key (a
    # browser sends none), for this long (seconds) after the call that returned the run;
    # retrieving the run again gives a fresh one. A week: long enough to share a link
    # for a review, short enough that a leaked one stops working.
    report_url_seconds: int = 7 * 24 * 3600
