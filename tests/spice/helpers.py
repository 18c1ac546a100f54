"""Spicepods and datasets for the Spice tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein

TEXT = {"Content-Type": "text/plain"}


def write_pod(folder: Path, cases: int = 500) -> Path:
    """A spicepod with three evals over one ``cases``-case JSON Lines dataset whose
    ``output`` column makes every scorer's mean known in advance (see expected_means)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "qa.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(cases):
            ideal = f"answer {i}"
            # i % 5: exact, wordier, upper case, JSON-ish, wrong
            output = [ideal, f"the {ideal}.", ideal.upper(), ideal, "nope"][i % 5]
            fh.write(json.dumps({"input": f"question {i}?", "ideal": ideal, "output": output}))
            fh.write("\n")
    (folder / "spicepod.yaml").write_text(
        "version: v1\nkind: Spicepod\nname: test\n"
        "datasets:\n  - {name: qa, from: 'file:qa.jsonl'}\n"
        "  - {name: outside, from: 'file:/etc/passwd'}\n"
        "models:\n  - {name: judge_model, from: 'openai:not-served'}\n"
        "  - {name: chat, from: 'openai:gpt-4o-mini'}\n"
        "embeddings:\n"
        "  - {name: minilm, from: 'huggingface:sentence-transformers/all-MiniLM-L6-v2'}\n"
        "evals:\n"
        "  - {name: exact, dataset: qa, scorers: [match, includes]}\n"
        "  - {name: fuzzy, description: fuzzy ones, dataset: qa,"
        " scorers: [fuzzy_match, levenshtein]}\n"
        "  - {name: semantic, dataset: qa, scorers: [minilm]}\n"
        "  - {name: judged, dataset: qa, scorers: [judge_model]}\n"
        "  - {name: broken, dataset: outside, scorers: [match]}\n"
    )
    return folder / "spicepod.yaml"


def expected_means(cases: int) -> dict[str, float]:
    kinds = [i % 5 for i in range(cases)]
    n = len(kinds)
    lev = 0.0
    for i in range(cases):
        ideal = f"answer {i}"
        output = [ideal, f"the {ideal}.", ideal.upper(), ideal, "nope"][i % 5]
        lev += Levenshtein.normalized_similarity(output, ideal)
    return {
        "match/mean": sum(k in (0, 3) for k in kinds) / n,
        "includes/mean": sum(k in (0, 1, 3) for k in kinds) / n,
        "fuzzy_match/mean": sum(k != 4 for k in kinds) / n,
        "levenshtein/mean": lev / n,
    }


def rows_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body
