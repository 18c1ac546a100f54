"""Judge engines: relevance judgements (and, later, generation and scoring) from a model."""
