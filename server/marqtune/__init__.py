"""Marqo's Marqtune surface: datasets, models and ranking evaluations (CLIP + IR metrics)."""

from .responses import MarqtuneResponses

PROVIDER = MarqtuneResponses
