"""The Signature value type: ordered fields, exact format/parse round trip, the version."""

from __future__ import annotations

import json
import pickle
import sqlite3

import pytest

from evaldock.engines.signature import Signature, evaldock_version


def test_of_orders_fields_and_appends_the_version() -> None:
    sig = Signature.of(
        "judge",
        "openai",
        model="SmolLM2-135M-Instruct",
        prompt="v1",
        temp=0.0,
        max_tokens=128,
        structured="json_schema",
    )
    assert sig.format() == (
        "judge:openai|model:SmolLM2-135M-Instruct|prompt:v1|temp:0|max_tokens:128"
        f"|structured:json_schema|evaldock:{evaldock_version()}"
    )
    assert str(sig) == sig.format() and type(str(sig)) is str
    assert sig.kind == "judge" and sig.get("model") == "SmolLM2-135M-Instruct"
    assert sig.version == evaldock_version() and sig.get("nope") is None
    assert list(sig.as_dict()) == [k for k, _ in sig.fields]


@pytest.mark.parametrize(
    "pairs",
    [
        [("ranker", "clip"), ("model", "hf-hub:Marqo/marqo-ecommerce-embeddings-B")],
        [("ranker", "mock"), ("pretrained", "/odd|path\\with|bars.pt"), ("dim", "512")],
        [("a", ""), ("b", "::"), ("c", "\\|\\\\|")],
    ],
)
def test_parse_inverts_format(pairs: list[tuple[str, str]]) -> None:
    sig = Signature(pairs)
    again = Signature.parse(sig.format())
    assert again == sig and again.fields == tuple(pairs)
    assert Signature.parse(again) is again


def test_it_is_its_text_wherever_text_goes() -> None:
    sig = Signature.of("ranker", "mock", dim=4)
    assert sig == sig.format() and hash(sig) == hash(sig.format())
    assert json.loads(json.dumps({"s": sig})) == {"s": sig.format()}
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (s TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (sig,))
        assert db.execute("SELECT s FROM t").fetchone()[0] == sig.format()
    copy = pickle.loads(pickle.dumps(sig))
    assert copy == sig and copy.fields == sig.fields
    assert repr(sig).startswith("Signature('ranker:mock|dim:4|")


def test_derived_signatures() -> None:
    ranker = Signature.of("ranker", "mock", model="m")
    both = Signature([("eval", "gcl")]).extended(ranker)
    assert [k for k, _ in both.fields] == ["eval", "ranker", "model", "evaldock"]
    assert both.without("evaldock").format() == "eval:gcl|ranker:mock|model:m"


@pytest.mark.parametrize("bad", ["", "novalue", "a:1|a:2", "a:1|", ":x", "k|y:1"])
def test_parse_rejects_what_format_never_writes(bad: str) -> None:
    with pytest.raises(ValueError):
        Signature.parse(bad)


def test_constructor_refuses_text() -> None:
    with pytest.raises(TypeError, match=r"Signature\.parse"):
        Signature("judge:mock")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        Signature([("bad key:", "x")])
