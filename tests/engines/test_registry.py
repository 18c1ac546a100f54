"""The engine registry reads each kind's declaration; nothing in it names a kind."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import types
from typing import Any

import pytest

from evaldock.engines import registry
from evaldock.engines.errors import EngineUnavailable


class Echo:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options


@pytest.fixture
def new_kind(monkeypatch: pytest.MonkeyPatch) -> str:
    """A kind that exists only as a package declaration (here, a module in sys.modules)."""
    package = types.ModuleType("evaldock.engines.echo_kind")
    package.IMPLEMENTATIONS = {"mock": f"{__name__}:Echo", "real": f"{__name__}:Echo"}  # type: ignore[attr-defined]
    package.REAL_DEFAULT = "real"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, package.__name__, package)
    return "echo_kind"


def test_a_new_kind_needs_only_its_declaration(new_kind: str) -> None:
    engine = registry.create(new_kind, "mock", {"x": 1})
    assert isinstance(engine, Echo) and engine.options == {"x": 1}
    assert registry.real_default(new_kind) == "real"
    assert registry.implementation(new_kind, "real") is Echo


def test_the_registry_names_no_kind() -> None:
    source = inspect.getsource(registry)
    for kind in ("judge", "ranker", "embedder", "ir_metrics"):
        assert f'"{kind}"' not in source


def test_shipped_kinds_and_their_defaults() -> None:
    assert {"judge", "ranker"} <= set(registry.kinds())
    assert "ir_metrics" not in registry.kinds()  # a library, not an engine kind
    assert registry.real_default("judge") == "similarity"
    assert registry.real_default("ranker") == "clip"
    for kind in ("judge", "ranker"):
        table = registry.implementations(kind)
        assert "mock" in table
        for target in table.values():
            assert target.startswith(f"evaldock.engines.{kind}.") and ":" in target
    assert registry.implementation("ranker", "mock").__name__ == "MockRanker"


def test_unknown_names_say_what_to_choose() -> None:
    with pytest.raises(EngineUnavailable) as info:
        registry.create("judge", "gpt-99")
    assert str(info.value.message) == "unknown judge engine 'gpt-99'"
    assert info.value.hint == "choose one of: mock, openai, similarity"
    for kind in ("no-such-kind", "nosuchkind", "errors"):
        with pytest.raises(EngineUnavailable) as info:
            registry.implementation(kind, "mock")
        assert info.value.message == f"unknown engine kind '{kind}'"
        assert "judge" in info.value.hint and "ranker" in info.value.hint


def test_mock_engines_import_no_model_library() -> None:
    code = (
        "import sys\n"
        "from evaldock.engines import registry\n"
        "for kind in registry.kinds():\n"
        "    registry.implementation(kind, 'mock')\n"
        "registry.real_default('ranker')\n"
        "heavy = {'torch', 'open_clip', 'sentence_transformers', 'transformers'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_kind_packages_are_importable_alone() -> None:
    for kind in registry.kinds():
        module = importlib.import_module(f"evaldock.engines.{kind}")
        assert isinstance(module.IMPLEMENTATIONS, dict)
