"""Objective's evaluations surface (LLM-as-a-judge relevance, 0/1/2)."""

from .responses import ObjectiveResponses

PROVIDER = ObjectiveResponses
