"""Judge engines: everything the surfaces ask of a language model (relevance judgements,
free-text generation, graded scores, JSON scores, JSON objects under a caller's schema),
served by an OpenAI-compatible server, the embedded similarity model, or a deterministic
mock. The interface is
:class:`evaldock.engines.protocols.Judge`; the values it returns are in ``base.py``.

Importing this package imports no engine (and so no model library).
"""

IMPLEMENTATIONS: dict[str, str] = {
    "mock": "evaldock.engines.judge.mock:MockJudge",
    "similarity": "evaldock.engines.judge.similarity:SimilarityJudge",
    "openai": "evaldock.engines.judge.openai:OpenAIJudge",
}
# Real mode without a judge server; with one (EVALDOCK_JUDGE_URLS) it is "openai", see
# config.judge_choice.
REAL_DEFAULT = "similarity"
