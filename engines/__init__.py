"""Pluggable engines behind the vendor surfaces.

Each engine kind (judge, ranker, embedder, ...) has a deterministic ``mock`` implementation
that needs no model, and real ones chosen by configuration. Handlers reach engines only
through :mod:`evaldock.engines.registry`, never by importing a model library.
"""
