"""Prompt placeholders: {column}, {{ }} escapes, strict errors, batch rendering."""

from __future__ import annotations

from typing import Any

import pytest

from evaldock.server.oxen.prompts import PromptInvalid, compile_prompt

COLUMNS = ["id", "text", "review text", "score"]


def test_placeholders_and_escapes() -> None:
    p = compile_prompt('Classify {{"label": ...}}: {review text} (id {id}, again {id})', COLUMNS)
    assert p.columns == ("review text", "id")
    assert p.render({"id": 7, "review text": "great"}) == (
        'Classify {"label": ...}: great (id 7, again 7)'
    )


def test_render_batch_matches_render() -> None:
    p = compile_prompt("{text} -> {score}", COLUMNS)
    batch: dict[str, list[Any]] = {
        "text": ["a", "b", None],
        "score": [1.5, None, 3],
        "id": [1, 2, 3],
    }
    assert p.render_batch(batch) == ["a -> 1.5", "b -> ", " -> 3"]
    rows = [dict(zip(batch, vals, strict=True)) for vals in zip(*batch.values(), strict=True)]
    assert [p.render(r) for r in rows] == p.render_batch(batch)


def test_a_prompt_without_placeholders() -> None:
    p = compile_prompt("Say hi {{}}", COLUMNS)
    assert p.columns == ()
    assert p.render_batch({"id": [1, 2]}) == ["Say hi {}", "Say hi {}"]


@pytest.mark.parametrize(
    ("template", "placeholder", "fragment"),
    [
        ("{nope}", "nope", "{nope} names no column"),
        ("{}", "", "{} names no column"),
        ("{ text }", " text ", "did you mean {text}?"),
        ("{Text}", "Text", "did you mean {text}?"),
        ("open { brace", None, "never closed"),
        ("{te{xt}", None, "never closed"),
        ("close } brace", None, "no matching"),
    ],
)
def test_errors_name_the_culprit_and_list_columns(
    template: str, placeholder: str | None, fragment: str
) -> None:
    with pytest.raises(PromptInvalid) as info:
        compile_prompt(template, COLUMNS)
    message = str(info.value)
    assert fragment in message
    assert "'review text'" in message and "'score'" in message
    assert info.value.placeholder == placeholder
    assert info.value.columns == COLUMNS
