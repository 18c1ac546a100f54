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
    # python graders run user code as the server's user: off unless turned on (and not
    # served by this version yet either way).
    python_graders: bool = False
