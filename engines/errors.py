"""Errors an engine raises towards the server."""

from __future__ import annotations


class EngineError(Exception):
    """An engine could not produce a result for one input (recorded per item, never a 500)."""


class EngineUnavailable(EngineError):
    """An engine cannot start: a library, a model file or a served model is missing.

    ``hint`` is the exact thing to do about it (an install command, a setting to fill in);
    the CLI prints it at start-up.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


MODELS_EXTRA = "pip install 'evaldock[models]'"


def require(module: str, *, purpose: str) -> None:
    """Fail with the install command when an optional model library is absent."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise EngineUnavailable(
            f"{purpose} needs the Python package '{module}', which is not installed",
            hint=MODELS_EXTRA,
        )
