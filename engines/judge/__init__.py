"""Judge engines: everything the surfaces ask of a language model (relevance judgements,
free-text generation, graded scores, JSON scores), served by an OpenAI-compatible server,
the embedded similarity model, or a deterministic mock. See ``base.py`` for the interface.
"""
