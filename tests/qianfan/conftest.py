"""The Qianfan suites run with ``[qianfan] default_model = "mock"``: their model version
ids (``amv-0``, ``amv-1``, ...) are the user's own, which generate only with that setting
or a ``[qianfan.models]`` entry (tests/qianfan/test_models.py checks the refusal without
either). A test's own flags win, ``default_model`` included."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

MOCK_DEFAULT = {"qianfan.default_model": "mock"}


@pytest.fixture
def make_client(make_client: Callable[..., Any]) -> Callable[..., Any]:
    def make(**flags: Any) -> Any:
        return make_client(**{**MOCK_DEFAULT, **flags})

    return make


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Iterator[Any]:
    yield make_client()
