"""Spice.ai's eval scorers: pure functions over Spice's values, and a small registry.

- :mod:`.values`: how Spice holds an answer (text, or a chat-completion choice list) and
  reads dataset cells into it; :class:`Column` is a batch parsed once for every scorer.
- :mod:`.exact`: the five built-ins (``match``, ``json_match``, ``includes``,
  ``fuzzy_match``, ``levenshtein``), pair and batch forms (``levenshtein``'s work is
  bounded per pair: :class:`PairTooLong` for a pair it cannot score exactly within
  :data:`LEVENSHTEIN_MAX_CELLS`); :mod:`.fuzzy`: fuzzy_match's normalisation with Rust's
  ``\\b`` and whitespace.
- :mod:`.model`: embedding-distance and LLM-judge scorers (async; they take an embedder
  or judge engine).
- :mod:`.registry`: the names a spicepod may use (:class:`Scorers`,
  :class:`ScorerUnknown`) and ``"<scorer>/mean"`` metrics as Spice computes them.

Not an engine kind: nothing to mock, no model of its own. Importing it imports no torch.
"""

from evaldock.engines.scorers.exact import LEVENSHTEIN_MAX_CELLS, PairTooLong
from evaldock.engines.scorers.registry import (
    BUILTIN,
    Scorers,
    ScorerUnknown,
    mean,
    metric_name,
    metrics,
    score_batch,
)
from evaldock.engines.scorers.values import (
    Choice,
    Choices,
    Column,
    InvalidValue,
    Message,
    Output,
    Value,
    as_output,
    output_of_completion,
    parse_cell,
    parse_input,
)

__all__ = [
    "BUILTIN",
    "LEVENSHTEIN_MAX_CELLS",
    "Choice",
    "Choices",
    "Column",
    "InvalidValue",
    "Message",
    "Output",
    "PairTooLong",
    "ScorerUnknown",
    "Scorers",
    "Value",
    "as_output",
    "mean",
    "metric_name",
    "metrics",
    "output_of_completion",
    "parse_cell",
    "parse_input",
    "score_batch",
]
