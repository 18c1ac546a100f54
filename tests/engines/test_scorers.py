"""Spice's eval scorers, case by case against the Rust definitions (scorer/*.rs)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from evaldock.engines.embedder.mock import MockEmbedder
from evaldock.engines.errors import EngineError, EngineUnavailable
from evaldock.engines.judge.base import UnknownModel
from evaldock.engines.judge.mock import MockJudge
from evaldock.engines.scorers import (
    BUILTIN,
    Choices,
    Column,
    InvalidValue,
    Scorers,
    ScorerUnknown,
    as_output,
    exact,
    fuzzy,
    mean,
    metrics,
    model,
    output_of_completion,
    parse_cell,
    parse_input,
    score_batch,
)


def choices(*contents: str | None, **fields: Any) -> Choices:
    """A choice list as Spice's tests write them: index i, role assistant."""
    items = []
    for i, content in enumerate(contents):
        message: dict[str, Any] = {"role": "assistant"}
        if content is not None:
            message["content"] = content
        items.append({"index": i, "message": message, **fields})
    return Choices.from_value(items)


def one(name: str, output: Any, ideal: Any) -> float:
    """Pair form and batch form must agree; return the score."""
    pair = exact.PAIR[name](as_output(output), as_output(ideal))
    (batch,) = score_batch(name, [output], [ideal])
    assert pair == batch, (name, output, ideal)
    return pair


# -- values ---------------------------------------------------------------------------
CHOICE_JSON = '[{"index": 0, "message": {"role": "assistant", "content": "Hello World"}}]'


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("Hello", "Hello"),
        ("", ""),
        (None, ""),
        (CHOICE_JSON, choices("Hello World")),
        ("  \n" + CHOICE_JSON, choices("Hello World")),  # serde skips JSON whitespace
        ("[]", Choices()),  # an empty choice list, not the text "[]"
        ("[1, 2]", "[1, 2]"),  # an array, but not of choices: text
        ('[{"index": 0, "message": {"content": "x"}}]', None),  # no role: text
        ('[{"index": 0.0, "message": {"role": "assistant"}}]', None),  # u32, not float
        ('[{"index": -1, "message": {"role": "assistant"}}]', None),
        ('[{"index": 4294967296, "message": {"role": "assistant"}}]', None),
        ('[{"index": 0, "message": {"role": "developer"}}]', None),  # not a response role
        ('[{"index": 0, "message": {"role": "assistant", "content": 5}}]', None),
        ('[{"index": 0, "message": {"role": "assistant"}, "finish_reason": "done"}]', None),
        ('[{"index": 0, "message": {"role": "assistant", "content": NaN}}]', None),
        ("[not json", None),
        ('{"index": 0}', None),  # an object is not a choice *list*
    ],
)
def test_parse_cell(cell: Any, expected: Any) -> None:
    assert parse_cell(cell) == (cell if expected is None else expected)


def test_choice_fields_and_serialisation() -> None:
    cell = (
        '[{"index": 1, "message": {"role": "assistant", "content": null, "refusal": "no"},'
        ' "finish_reason": "stop", "logprobs": null, "extra": 1}]'
    )
    value = parse_cell(cell)
    assert isinstance(value, Choices)
    assert value.contents == [""] and value.text == ""  # missing content: unwrap_or_default
    assert value.to_json() == [
        {"index": 1, "message": {"refusal": "no", "role": "assistant"}, "finish_reason": "stop"}
    ]


def test_list_cells_must_be_choices() -> None:
    assert as_output([{"index": 0, "message": {"role": "assistant", "content": "x"}}]) == (
        choices("x")
    )
    assert as_output("[]") == "[]"  # held text is never parsed again
    bad_cells: list[Any] = [[1], [{"index": 0}], ["text"], 42]
    for bad in bad_cells:
        with pytest.raises(InvalidValue, match="list of chat-completion choices"):
            as_output(bad)


def test_output_of_completion_follows_the_first_ideal() -> None:
    completion = [
        {"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "B"}},
    ]
    assert output_of_completion(completion, "text ideal") == "A"
    assert output_of_completion([], "text ideal") == ""
    assert output_of_completion(completion, Choices()) == Choices.from_value(completion)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("What is 2+2?", "What is 2+2?"),
        (None, ""),
        (
            '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]',
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        ),
        ('[{"role": "user"}]', '[{"role": "user"}]'),  # no content: not messages, text
        ("[1]", "[1]"),
        ([{"role": "user", "content": "Hi", "junk": 1}], [{"role": "user", "content": "Hi"}]),
    ],
)
def test_parse_input(cell: Any, expected: Any) -> None:
    assert parse_input(cell) == expected


# -- match ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "ideal", "score"),
    [
        ("Hello", "Hello", 1.0),
        ("Hello", "Hi", 0.0),
        ("Hello", "hello", 0.0),  # case-sensitive
        ("Hello", "Hello ", 0.0),
        ("", "", 1.0),
        ("café", "cafe\u0301", 0.0),  # NFC vs NFD: different scalar values
        ("東京", "東京", 1.0),
        ("🎉", "🎉", 1.0),
        ("Hello", choices("Hello"), 1.0),  # text vs choices: first choice's content
        (choices("Hello"), "Hello", 1.0),
        ("Hi", choices("Hello"), 0.0),
        ("Hello", choices("Hello", "Other"), 1.0),  # only the first choice counts
        ("", Choices(), 1.0),  # no first choice: ""
        ("", choices(None), 1.0),
        (choices("Hello"), choices("Hello"), 1.0),
        (choices("Hello"), choices("Hi"), 0.0),
        (choices("a", "b"), choices("a"), 0.0),  # unequal length
        (choices("a"), choices("a", finish_reason="stop"), 0.0),  # full struct equality
        (Choices(), Choices(), 1.0),
    ],
)
def test_match(output: Any, ideal: Any, score: float) -> None:
    assert one("match", output, ideal) == score


def test_match_compares_whole_choices() -> None:
    a = Choices.from_value([{"index": 0, "message": {"role": "assistant", "content": "x"}}])
    b = Choices.from_value([{"index": 1, "message": {"role": "assistant", "content": "x"}}])
    assert one("match", a, b) == 0.0  # same content, different index


# -- json_match -----------------------------------------------------------------------
DEEP_OK = "[" * 127 + "]" * 127
DEEP_BAD = "[" * 128 + "]" * 128


@pytest.mark.parametrize(
    ("output", "ideal", "score"),
    [
        ('{"key": "value"}', '{"key": "value"}', 1.0),
        ('{\n   "key":"value"\n   }\n', '{"key": "value"}', 1.0),  # whitespace
        ('{"key2": "foo", "key1": "bar"}', '{"key1": "bar", "key2": "foo"}', 1.0),  # key order
        ('{"key": "value"}', '{"key": "notvalue"}', 0.0),
        ('{"key": 100}', '{"key": 100.1}', 0.0),
        ('{"key": 100}', '[{"key": 100.1}, {"key": 99.9}]', 0.0),
        ('{"key": "value"}', '{"anotherkey": "value"}', 0.0),
        ('{"key": "value"}', '{"key": "value", "anotherkey": "value"}', 0.0),
        ('{"key": [1.0, 2.0, 3.0]}', '{"key": [1, 2, 3]}', 1.0),  # 1 == 1.0
        ('{"key": [1, 2, 3]}', '{"key": [1, 2, 3, 3]}', 0.0),
        ('{"key": [1, 2, 3]}', '{"key": [1, 3, 2]}', 0.0),  # array order matters
        ('{"key": []}', '{"key": [1]}', 0.0),
        ('"{ \\"key\\": \\"value }"', '{"key": "value"}', 0.0),
        ('{ "key": "value }', '{"key": "value"}', 0.0),  # invalid JSON
        ("1", "1.0", 1.0),
        ("1", "1e0", 1.0),
        ("-0", "0", 1.0),
        ("1", "true", 0.0),  # a bool is not a number
        ("[true]", "[1]", 0.0),
        ('{"a": [[1, 2], [3, {"b": [4]}]]}', '{"a": [[1.0, 2], [3e0, {"b": [4.0]}]]}', 1.0),
        ('{"a": [[1, 2], [3]]}', '{"a": [[1, 2, 3]]}', 0.0),  # nested arrays keep shape
        ("null", "null", 1.0),
        ('{"ключ": "東京 🎉"}', '{"\\u043a\\u043b\\u044e\\u0447": "東京 🎉"}', 1.0),
        ('"\\ud83d\\ude00"', '"😀"', 1.0),  # a surrogate pair is one scalar value
        ('"\\ud800"', '"\\ud800"', 0.0),  # serde refuses a lone surrogate
        ('{"a": 1, "a": 2}', '{"a": 2}', 1.0),  # duplicate keys: the last wins
        ("9007199254740993", "9007199254740992", 1.0),  # both the same f64
        ("NaN", "NaN", 0.0),
        ("[Infinity]", "[Infinity]", 0.0),
        ("1e400", "1e400", 0.0),  # out of f64 range: serde fails to parse
        ("1" + "0" * 400, "1" + "0" * 400, 0.0),
        (DEEP_OK, DEEP_OK, 1.0),  # serde's recursion limit: 127 levels parse
        (DEEP_BAD, DEEP_BAD, 0.0),
        ("", "", 0.0),  # "" is not JSON
        ("{}", "{}", 1.0),
        (choices('{"a": 1}', "[2]"), choices('{"a": 1.0}', "[2.0]"), 1.0),
        (choices('{"a": 1}'), choices('{"a": 1}', "[]"), 0.0),  # unequal length
        (choices(None), choices(None), 0.0),  # missing content: "", not JSON
        (Choices(), Choices(), 1.0),  # nothing to compare: all() of nothing
        ('{"a": 1}', choices('{"a": 1.0}'), 1.0),
    ],
)
def test_json_match(output: Any, ideal: Any, score: float) -> None:
    assert one("json_match", output, ideal) == score


# -- includes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "ideal", "score"),
    [
        ("Hello World", "World", 1.0),
        ("Hello World", "world", 0.0),  # raw and case-sensitive
        ("World", "Hello World", 0.0),  # the output contains the ideal, not the reverse
        ("abc", "", 1.0),
        ("", "", 1.0),
        ("", "a", 0.0),
        ("東京は日本の首都です", "日本", 1.0),
        ("🎉 party 🎊", "🎊", 1.0),
        ("cafe\u0301", "cafe", 1.0),  # NFD: the base letters are there, raw
        ("café", "cafe", 0.0),  # NFC: "é" is one scalar value
        (choices("a b", "c d"), choices("a", "d"), 1.0),  # pairwise
        (choices("a b", "c d"), choices("d", "a"), 0.0),  # in order
        (choices("a b"), choices("a", "b"), 0.0),  # unequal length
        ("a b", choices("a"), 1.0),
        (Choices(), Choices(), 1.0),
    ],
)
def test_includes(output: Any, ideal: Any, score: float) -> None:
    assert one("includes", output, ideal) == score


# -- fuzzy_match ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Quick, Brown Fox!", "quick brown fox"),
        ("An apple a day", "apple day"),
        ("Banana the", "banana"),
        ("theatre and thesis", "theatre and thesis"),  # articles only as whole words
        ("_the_", ""),  # "_" is ASCII punctuation, dropped first
        ("the\tcat\u3000sat\u00a0\n", "cat sat"),  # Unicode White_Space collapses
        ("東京 the 日本", "東京 日本"),
        ("ΣΑΣ", "σας"),  # final sigma, as Rust's to_lowercase
        ("\u212a", "k"),  # KELVIN SIGN lower-cases to ASCII k
        ("İ", "i\u0307"),
        # Where Rust's \w differs from Python's, Rust wins:
        ("the\u0301 end", "the\u0301 end"),  # a combining mark is a word char
        ("a\u200db", "a\u200db"),  # ZWJ is a word char (Join_Control)
        ("aⓐ", "aⓐ"),  # circled letters are Alphabetic
        ("½the", "½"),  # "½" (No) is not a word char in Rust
        ("an² x", "² x"),
        ("x\x1cy a", "x\x1cy"),  # U+001C is not whitespace in Rust
        ("", ""),
        ("...", ""),
        ("«the» quote", "« » quote"),  # non-ASCII punctuation stays; "the" becomes " "
    ],
)
def test_fuzzy_normalize(text: str, normalized: str) -> None:
    assert fuzzy.normalize(text) == normalized


@pytest.mark.parametrize(
    ("output", "ideal", "score"),
    [
        ("The answer is 42.", "answer is 42", 1.0),
        ("Paris", "The city of Paris!", 1.0),  # either contains the other
        ("Paris", "London", 0.0),
        ("", "", 1.0),
        ("", "a", 1.0),  # "a" normalises to "": empty equals empty
        ("", "b", 0.0),
        ("...", "", 1.0),
        ("the", "a", 1.0),
        ("the\u0301", "th", 1.0),  # Rust keeps "thé"; Python's \b would drop "the"
        ("東京タワー", "東京", 1.0),
        ("🎉 Party", "party", 1.0),
        (choices("The Cat", "a dog"), choices("cat", "DOG!"), 1.0),
        (choices("The Cat", "a dog"), choices("cat"), 0.0),  # unequal length
        (choices("cat", "bird"), choices("cat", "dog"), 0.0),  # every pair must match
    ],
)
def test_fuzzy_match(output: Any, ideal: Any, score: float) -> None:
    assert one("fuzzy_match", output, ideal) == score


def test_rust_word_class_spot_checks() -> None:
    ranges = fuzzy.rust_word_ranges()

    def word(ch: str) -> bool:
        return any(lo <= ord(ch) <= hi for lo, hi in ranges)

    assert all(map(word, "aZ09é東Ⅷⓐᵃ_\u0301\u200d\u203f"))  # Ⅷ is Nl; _ and U+203F are Pc
    assert not any(map(word, " -²½€🎉\u3000"))


# -- levenshtein ----------------------------------------------------------------------
def rust_similarity(a: str, b: str) -> float:
    """crates/util/src/levenshtein.rs, transcribed: char DP, 1 - dist / max chars."""
    if not a:
        dist = len(b)
    elif not b:
        dist = len(a)
    else:
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i] + [0] * len(b)
            for j, cb in enumerate(b, 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            prev = cur
        dist = prev[len(b)]
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - dist / longest


@pytest.mark.parametrize(
    ("output", "ideal", "score"),
    [
        ("Hello", "Hello", 1.0),
        ("kitten", "sitting", 1.0 - 3.0 / 7.0),
        ("", "", 1.0),
        ("", "Hello", 0.0),
        ("hello", "hallo", 0.8),
        ("日本語", "日本", 1.0 - 1.0 / 3.0),  # chars, not bytes (9 vs 6 in UTF-8)
        ("🎉", "🎊", 0.0),
        ("hello 🎉", "hello 🎊", 1.0 - 1.0 / 7.0),
        ("e\u0301", "é", 0.0),  # NFD is two scalar values, NFC one: distance 2 of 2
        ("👨\u200d👩\u200d👧", "👨", 1.0 - 4.0 / 5.0),  # a ZWJ family is 5 chars
        (choices("Hello World"), choices("Hello World"), 1.0),
        (choices("Hello World"), choices("Hi"), 1.0 - 10.0 / 11.0),
        ("Greetings", choices("Greetings"), 1.0),
        ("Hi", choices("Hello World"), 1.0 - 10.0 / 11.0),
        ("Hi", choices("Hello World", "Hi"), 1.0 - 10.0 / 11.0),  # first choice only
        ("", Choices(), 1.0),
    ],
)
def test_levenshtein(output: Any, ideal: Any, score: float) -> None:
    assert one("levenshtein", output, ideal) == pytest.approx(score, abs=1e-15)


def test_levenshtein_is_the_rust_definition_and_rapidfuzz() -> None:
    rng = random.Random(7)
    alphabet = "ab é\u0301日本🎉👩\u200d"
    pairs = [
        (
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
        )
        for _ in range(400)
    ]
    ours = score_batch("levenshtein", [a for a, _ in pairs], [b for _, b in pairs])
    assert ours == [Levenshtein.normalized_similarity(a, b) for a, b in pairs]
    assert ours == [rust_similarity(a, b) for a, b in pairs]  # bit for bit


def test_levenshtein_banded_equals_the_plain_distance_where_both_are_feasible() -> None:
    # A small cell bound sends pairs of 40-200 chars through the banded path: each gets
    # the plain answer bit for bit, or PairTooLong when its distance is over the cutoff.
    rng = random.Random(11)
    banded = refused = 0
    for _ in range(600):
        a = "".join(rng.choices("abcé", k=rng.randint(40, 200)))
        edits = rng.randint(0, 60)
        b = list(a)
        for _ in range(edits):
            i = rng.randrange(len(b) + 1)
            op = rng.randrange(3)
            if op == 0 or not b:
                b.insert(i, rng.choice("abxé"))
            elif op == 1:
                del b[min(i, len(b) - 1)]
            else:
                b[min(i, len(b) - 1)] = rng.choice("abxé")
        b_text = "".join(b)
        max_cells = 4000
        longest = max(len(a), len(b_text))
        cutoff = max_cells // (2 * longest)
        plain = Levenshtein.normalized_similarity(a, b_text)
        if len(a) * len(b_text) <= max_cells:
            continue
        if Levenshtein.distance(a, b_text) <= cutoff:
            banded += 1
            assert exact.levenshtein_similarity(a, b_text, max_cells) == plain
            assert score_batch("levenshtein", [a], [b_text], levenshtein_max_cells=max_cells) == [
                plain
            ]
        else:
            refused += 1
            with pytest.raises(exact.PairTooLong) as e:
                exact.levenshtein_similarity(a, b_text, max_cells)
            assert e.value.cutoff == cutoff
    assert banded > 50 and refused > 50  # both paths taken


def test_levenshtein_of_two_million_char_texts_is_refused_naming_the_bound() -> None:
    # 27 s and a number before the bound (10^12 DP cells); now ~0.1 s and a reason.
    rng = random.Random(3)
    a, b = ("".join(rng.choices("abcd", k=1_000_000)) for _ in range(2))
    with pytest.raises(exact.PairTooLong) as e:
        score_batch("levenshtein", ["short", a], ["shirt", b])
    message = str(e.value)
    assert "1,000,000 characters" in message and "LEVENSHTEIN_MAX_CELLS" in message
    assert e.value.row == 1  # the caller can name the case
    assert isinstance(e.value, ValueError)  # a run fails with the reason, not a 500
    assert e.value.hint in message


def test_long_texts_a_few_edits_apart_score_exactly() -> None:
    # Ten characters no text holds, at known places: the distance is exactly 10, and a
    # million-character pair is scored within the bound (rapidfuzz's band).
    rng = random.Random(4)
    a = "".join(rng.choices("abcd", k=1_000_000))
    b = list(a)
    for i in range(10):
        b[i * 99_991 + 7] = "Z"
    score = score_batch("levenshtein", [a, "kitten"], ["".join(b), "sitting"])
    assert score == [1.0 - 10 / 1_000_000, 1.0 - 3.0 / 7.0]
    # Unequal lengths: the longer one counts, as in the plain definition.
    assert one("levenshtein", a + "xyz", a) == 1.0 - 3 / 1_000_003
    assert one("levenshtein", "", a) == 0.0


# -- batches and the registry ---------------------------------------------------------
def test_batches_equal_pairs_on_mixed_columns() -> None:
    outputs: list[Any] = ["Hello", None, choices('{"a": 1}'), "The cat", "x", choices("a", "b")]
    ideals: list[Any] = ["Hello", "", '{"a": 1.0}', choices("cat"), "[]", choices("a", "b")]
    out, ideal = Column.of(outputs), Column.of(ideals)
    assert out.choice_rows == {2, 5} and ideal.choice_rows == {3, 5}
    assert out.texts[1] == "" and out.texts[2] == '{"a": 1}'
    for name in BUILTIN:
        pair = exact.PAIR[name]
        expected = [pair(as_output(o), as_output(i)) for o, i in zip(outputs, ideals, strict=True)]
        assert score_batch(name, out, ideal) == expected, name
        assert score_batch(name, outputs, ideals) == expected, name


def test_batch_repeats_and_lengths() -> None:
    ideals = ["yes", "no"] * 50
    outputs = ["Yes!", "no"] * 50
    assert score_batch("fuzzy_match", outputs, ideals) == [1.0] * 100
    assert score_batch("match", outputs, ideals) == [0.0, 1.0] * 50
    assert score_batch("match", [], []) == []
    with pytest.raises(ValueError, match="pair row by row"):
        score_batch("match", ["a"], [])


def test_unknown_scorers_carry_the_known_names() -> None:
    with pytest.raises(ScorerUnknown) as err:
        score_batch("exact", ["a"], ["a"])
    assert err.value.name == "exact"
    assert err.value.known == sorted(BUILTIN)
    assert isinstance(err.value, LookupError)

    scorers = Scorers(
        embedders={"hf_minilm": MockEmbedder({})}, judge=MockJudge({}), judge_models=["judge"]
    )
    assert scorers.kind("match") == "builtin"
    assert scorers.kind("hf_minilm") == "embedding"
    assert scorers.kind("judge") == "judge"
    with pytest.raises(ScorerUnknown) as err:
        scorers.check(["match", "gpt"])
    assert err.value.known == sorted([*BUILTIN, "hf_minilm", "judge"])
    assert "embeddings:/models:" in str(err.value)
    # Without a judge engine, model names are not scorers.
    with pytest.raises(ScorerUnknown):
        Scorers(judge_models=["judge"]).kind("judge")


def test_metrics_are_spice_f32_means() -> None:
    hits = [1.0] * 7 + [0.0] * 4
    assert metrics({"match": hits}) == {"match/mean": float(np.float32(7) / np.float32(11))}
    assert str(np.float32(metrics({"match": hits})["match/mean"])) == "0.6363636"
    assert mean([]) == 0.0
    assert mean([1.0, 0.0, 1.0, 1.0]) == 0.75
    # Summed left to right in f32: 1e8 + 1 is 1e8 there, so the 1 is lost (f64: 1/3).
    assert mean([1e8, 1.0, -1e8]) == 0.0


# -- embedding scorers ----------------------------------------------------------------
def test_embedding_scores_are_one_over_one_plus_l2() -> None:
    emb = MockEmbedder({})
    outputs: list[Any] = ["red shirt", "blue car", choices("red shirt", "ignored"), ""]
    ideals: list[Any] = ["red shirt", "red shirt", "red shirt", "something"]
    scores = asyncio.run(model.embedding_scores(emb, outputs, ideals))
    a = emb.encode(["red shirt", "blue car", "red shirt", ""])
    b = emb.encode(ideals)
    expected = 1.0 / (1.0 + np.linalg.norm(a - b, axis=1))
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert scores[0] == 1.0 and scores[2] == 1.0  # first choice's content
    assert asyncio.run(model.embedding_scores(emb, [], [])) == []


def test_embedding_scorer_through_the_registry_embeds_each_text_once() -> None:
    class Counting(MockEmbedder):
        calls: list[list[str]] = []

        def encode(self, texts: Any, *, batch_size: int = 64) -> np.ndarray:
            self.calls.append(list(texts))
            return super().encode(texts, batch_size=batch_size)

    emb = Counting({})
    scorers = Scorers(embedders={"hf_minilm": emb})
    scores = asyncio.run(scorers.score("hf_minilm", ["a", "b", "a"], ["b", "b", "a"]))
    assert emb.calls == [["a", "b"]]
    assert scores[1] == scores[2] == 1.0 and scores[0] < 1.0


# -- judge scorers --------------------------------------------------------------------
class RecordingJudge(MockJudge):
    """The mock judge, recording what the scorer sends and answering ``reply``."""

    def __init__(self, reply: Any = 0.5, fail_on: int | None = None) -> None:
        super().__init__({"models": {"my_judge": "mock"}})
        self.reply = reply
        self.fail_on = fail_on
        self.calls: list[dict[str, Any]] = []

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        self._served(model)
        self.calls.append(
            {"messages": messages, "metadata": dict(metadata), "model": model, "params": params}
        )
        if self.fail_on is not None and len(self.calls) - 1 == self.fail_on:
            raise EngineError("the reply was not JSON")
        return self.reply


def test_judge_scorer_sends_what_spice_sends() -> None:
    judge = RecordingJudge(reply=1)
    inputs = ["What is 2+2?", '[{"role": "user", "content": "Hi"}]']
    outputs: list[Any] = ["4", choices("Hello")]
    ideals: list[Any] = ["4", CHOICE_JSON]  # a raw cell: parse it as Spice loads it
    ideals[1] = parse_cell(ideals[1])
    scores = asyncio.run(model.judge_scores(judge, "my_judge", inputs, outputs, ideals))
    assert scores == [1.0, 1.0] and all(type(s) is float for s in scores)
    first, second = judge.calls
    assert first["messages"] == [{"role": "user", "content": ""}]
    assert first["params"] == {"store": True}
    assert first["model"] == "my_judge"
    assert first["metadata"] == {"input": "What is 2+2?", "actual": "4", "ideal": "4"}
    assert second["metadata"] == {
        "input": [{"role": "user", "content": "Hi"}],
        "actual": [{"index": 0, "message": {"content": "Hello", "role": "assistant"}}],
        "ideal": [{"index": 0, "message": {"content": "Hello World", "role": "assistant"}}],
    }
    json.dumps(second["metadata"])  # what goes on the wire must serialise


@pytest.mark.parametrize("reply", ["0.5", None, True, float("nan"), float("inf")])
def test_judge_scorer_rejects_non_numeric_scores(reply: Any) -> None:
    with pytest.raises(EngineError, match="case 0"):
        asyncio.run(model.judge_scores(RecordingJudge(reply), "my_judge", ["q"], ["a"], ["b"]))


def test_judge_scorer_fails_the_batch_on_the_first_error() -> None:
    judge = RecordingJudge(fail_on=1)
    with pytest.raises(EngineError, match="the reply was not JSON") as err:
        asyncio.run(
            model.judge_scores(judge, "my_judge", ["q"] * 3, ["a"] * 3, ["b"] * 3, concurrency=1)
        )
    assert type(err.value) is EngineError and "case 1" in str(err.value)


def test_judge_scorer_passes_unknown_model_and_unavailable_through() -> None:
    with pytest.raises(UnknownModel):
        asyncio.run(model.judge_scores(RecordingJudge(), "gpt-9", ["q"], ["a"], ["b"]))

    class NoGenerator(RecordingJudge):
        async def json_score(self, *args: Any, **kwargs: Any) -> Any:
            raise EngineUnavailable("no generator", hint="set EVALDOCK_JUDGE_URLS")

    with pytest.raises(EngineUnavailable) as err:
        asyncio.run(model.judge_scores(NoGenerator(), "my_judge", ["q"], ["a"], ["b"]))
    assert err.value.hint == "set EVALDOCK_JUDGE_URLS"


def test_judge_scorer_through_the_registry_with_the_mock_judge() -> None:
    scorers = Scorers(judge=MockJudge({}), judge_models=["mock"])
    scores = asyncio.run(
        scorers.score("mock", ["Paris is the capital", "no idea"], ["Paris", "Paris"], ["q1", "q2"])
    )
    assert scores == [1.0, 0.0]  # the mock's term overlap with the ideal


def test_article_patterns_are_the_rust_regex() -> None:
    """The literal-first patterns replace exactly what ``\\b(a|an|the)\\b`` replaces."""
    ranges = fuzzy.rust_word_ranges()

    def word(ch: str) -> bool:
        return any(lo <= ord(ch) <= hi for lo, hi in ranges)

    def brute(s: str) -> str:  # the regex crate's leftmost-first scan, by hand
        out, i = [], 0
        while i < len(s):
            before = i > 0 and word(s[i - 1])
            for art in ("a", "an", "the"):  # alternation order
                end = i + len(art)
                after = end < len(s) and word(s[end])
                if not before and s.startswith(art, i) and not after:
                    out.append(" ")
                    i = end
                    break
            else:
                out.append(s[i])
                i += 1
        return "".join(out)

    rng = random.Random(3)
    ascii_alphabet, unicode_alphabet = "athen x.-_1", "athen x-é\u0301\u200dⓐ½²東"
    for alphabet in (ascii_alphabet, unicode_alphabet):
        for _ in range(2000):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
            pattern = fuzzy._ARTICLES_ASCII if s.isascii() else fuzzy._articles_unicode()
            assert pattern.sub(" ", s) == brute(s), repr(s)
            if s.isascii():
                assert pattern.sub(" ", s) == re.sub(r"\b(a|an|the)\b", " ", s)
