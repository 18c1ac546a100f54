"""A query parameter a page cannot use (pages.py and control.py raise it)."""

from __future__ import annotations


class BadQuery(Exception):
    """A query parameter the page cannot use: a 400 page saying which and why."""
