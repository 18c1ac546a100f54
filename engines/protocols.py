"""The seams between the server and the engines: what a surface may call, typed.

Surfaces hold engines as these protocols, never as concrete classes, so a mock and a real
implementation are interchangeable and mypy checks both against the same contract.

- :class:`Engine`: every engine (``name``, ``signature``, ``check``, ``aclose``);
- :class:`RelevanceJudge` and :class:`Judge`: language-model judgements (Objective, Oxen,
  Qianfan, Spice);
- :class:`GenerationBackend`: what judge routing calls on the backend serving a vendor
  model name (an OpenAI-compatible server or the mock);
- :class:`Ranker`: embeddings and top-k retrieval (Marqtune);
- :class:`Embedder`: text embeddings (Oxen's embeddings, Spice's embedding scorers).

Rankers and embedders compute: they live in the worker processes (a task reaches one with
``TaskContext.engine(kind, Protocol)``); judges talk to a server and live in the API
process.

Nothing here imports an engine module at run time. Signatures cross the seam as text (see
:class:`evaldock.engines.signature.Signature`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from evaldock.engines.judge.base import Generation, Relevance, Score, Structured, Usage


class Engine(Protocol):
    """What the server does with any engine: name it, record its signature, start it
    (``check`` proves it can serve: a model loads, a served model answers) and close it."""

    @property
    def name(self) -> str: ...

    @property
    def signature(self) -> str:
        """What produced the results, reproducibly: a :class:`Signature`'s text (plain
        ``str``, so it stores and encodes anywhere); ``Signature.parse`` reads it back."""
        ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


class RelevanceJudge(Engine, Protocol):
    """Objective's judge: a 0/1/2 relevance judgement of an object for a query."""

    async def relevance(self, query: str, obj: Mapping[str, Any]) -> Relevance: ...


class Judge(RelevanceJudge, Protocol):
    """Everything the surfaces ask of a language model; every judge implementation serves it.

    ``model`` is a vendor's model name (Oxen's ``gpt-4o-mini``, a Spice model); None means
    the judge's own model. An unknown name raises ``UnknownModel``; a request that needs a
    generator where none is configured raises ``EngineUnavailable`` naming the setting.
    Other failures raise ``EngineError`` (record it per item), except ``score``, which
    answers ``Score(None, ...)`` for anything it could not grade.
    """

    @property
    def usage(self) -> Usage: ...

    def known_models(self) -> list[str]: ...

    def generation_signature(self, model: str | None = None) -> str:
        """What :meth:`generate` with this ``model`` produces text with (served model,
        limits, sampling), for a surface to record beside generated text; :attr:`signature`
        describes judgements. Raises as :meth:`generate` does for an unknown model."""
        ...

    async def generate(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Generation: ...

    async def score(
        self,
        *,
        variables: Mapping[str, Any],
        max_score: int,
        prompt_template: str | None = None,
        dimensions: list[Mapping[str, str]] | None = None,
        min_score: int = 1,
        params: Mapping[str, Any] | None = None,
    ) -> Score: ...

    async def json_score(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> float: ...

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Structured:
        """A JSON object valid under ``schema`` (a JSON schema whose root is an object),
        asked with the served model's structured output and validated here; an answer
        that stays invalid after the judge's retries raises ``EngineError``."""
        ...


class GenerationBackend(Protocol):
    """A backend that serves models by their served name (after routing resolved the
    vendor's name): what :class:`evaldock.engines.judge.routing.ModelRoutes` calls."""

    async def generate_served(
        self, messages: list[dict[str, Any]], served: str, params: Mapping[str, Any] | None
    ) -> Generation: ...

    def generation_signature_served(self, served: str) -> str: ...

    async def json_score_served(
        self,
        messages: list[dict[str, Any]],
        metadata: Mapping[str, Any],
        served: str,
        params: Mapping[str, Any] | None,
    ) -> float: ...

    async def structured_served(
        self,
        messages: list[dict[str, Any]],
        schema: Mapping[str, Any],
        served: str,
        params: Mapping[str, Any] | None,
    ) -> Structured: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


# Builds the backend for a routed model: (backend kind "openai" | "mock", its options).
BackendFactory = Callable[[str, Mapping[str, Any]], GenerationBackend]


class Ranker(Engine, Protocol):
    """Texts and images to L2-normalised float32 vectors in one space, and exact top-k.

    A ranker holds one loaded model. Threads share it through :meth:`using`, which loads
    a model only when it is not the one loaded, and holds the ranker for the block.
    """

    @property
    def model_name(self) -> str: ...  # as the client named it, e.g. "ViT-B-32/laion2b_s34b_b79k"

    @property
    def dim(self) -> int: ...  # embedding width

    def knows(self, model: str, pretrained: str | None = None) -> bool: ...

    def load(self, model: str, pretrained: str | None = None) -> None: ...

    def using(
        self,
        model: str,
        pretrained: str | None = None,
        *,
        say: Callable[[str], None] | None = None,
    ) -> contextlib.AbstractContextManager[Ranker]: ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, refs: Sequence[str]) -> np.ndarray: ...

    def embed_fields(
        self,
        rows: Sequence[Mapping[str, Any]],
        keys: Sequence[str],
        weights: Sequence[float],
        kinds: Mapping[str, str] | None = None,
    ) -> np.ndarray: ...

    def topk(
        self, queries: np.ndarray, docs: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


class Embedder(Protocol):
    """Texts to float32 vectors. ``encode`` is synchronous and CPU/GPU-bound: it runs in a
    worker process (a task), never on the API process's event loop."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def signature(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...
