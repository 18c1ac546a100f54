"""User-chosen names (evals, datasets, spicepod entries): control characters, direction
overrides, U+FFFD and path-like names are refused with Spice's 400, nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from evaldock.server.spice import spicepod

from .helpers import rows_of

BAD_NAMES = ["a\x00b", "a\u202ecsv.exe", "a\ufffdb", "..", ".", "a\\b", "a\nb", "a\x85b", "a/b"]


def _put(client: Any, name: str, dataset: str = "d") -> Any:
    body = {"dataset": dataset, "scorers": ["match"], "data": [{"input": "q", "ideal": "a"}]}
    # Dots percent-encoded too, or the client resolves "/v1/evals/.." itself.
    return client.put(f"/v1/evals/{quote(name, safe='').replace('.', '%2E')}", json=body)


@pytest.mark.parametrize("name", BAD_NAMES, ids=[ascii(n) for n in BAD_NAMES])
def test_bad_eval_names_are_refused(client, name: str) -> None:
    r = _put(client, name)
    # a "/" (even as %2F) splits the path: no route of one name answers (404/405)
    assert r.status_code in ((400, 404, 405) if "/" in name else (400,)), (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain")
    if r.status_code == 400:
        assert "eval name" in r.text, r.text
    names = [s["name"] for s in rows_of(client.get("/v1/evals"))]
    assert name not in names


def test_nul_name_is_refused_with_the_reason(client) -> None:
    body = {"dataset": "d", "scorers": ["match"], "data": [{"input": "q", "ideal": "a"}]}
    r = client.put("/v1/evals/a%00b", json=body)
    assert r.status_code == 400 and "U+0000" in r.text, r.text


@pytest.mark.parametrize("dataset", ["..", "...", "."])
def test_path_like_dataset_names_are_refused(client, dataset: str) -> None:
    r = _put(client, "fine", dataset)
    assert r.status_code in (400, 422) and "dataset" in r.text, r.text
    assert "fine" not in [s["name"] for s in rows_of(client.get("/v1/evals"))]


def test_a_good_name_still_works(client) -> None:
    assert _put(client, "good-name_1.v2").status_code == 200


@pytest.mark.parametrize("key", ["evals", "datasets", "models", "embeddings"])
def test_spicepod_entries_with_bad_names_do_not_load(tmp_path: Path, key: str) -> None:
    entries = {
        "datasets": "datasets:\n  - {name: qa, from: 'file:qa.jsonl'}\n",
        "models": "models:\n  - {name: m, from: 'openai:x'}\n",
        "embeddings": "embeddings:\n  - {name: e, from: 'huggingface:x'}\n",
        "evals": "evals:\n  - {name: ev, dataset: qa, scorers: [match]}\n",
    }
    bad = {"datasets": "qa", "models": "m", "embeddings": "e", "evals": "ev"}[key]
    text = "version: v1\nkind: Spicepod\nname: t\n" + "".join(entries.values())
    text = text.replace(f"name: {bad},", 'name: "a\\u202eb",', 1)
    path = tmp_path / "spicepod.yaml"
    path.write_text(text)
    with pytest.raises(spicepod.SpicepodError, match="U\\+202E"):
        spicepod.load(path)
