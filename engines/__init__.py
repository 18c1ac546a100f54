"""Pluggable engines behind the vendor surfaces.

Each engine kind (judge, ranker, embedder, ...) is a package here that declares its
implementations (``IMPLEMENTATIONS``, ``REAL_DEFAULT``): a deterministic ``mock`` that needs
no model, and real ones chosen by configuration. Surfaces build engines only through
:mod:`evaldock.engines.registry`, which imports an implementation when asked for, so
``--mode mock`` never imports a model library; they hold them as the protocols of
:mod:`evaldock.engines.protocols`, and record what produced a result as a
:class:`evaldock.engines.signature.Signature`.
"""
