-- The dashboard's read model (server/marqtune/views.py) pages evaluations of every
-- tenant by (created_at, id); without this index a page of 100,000 sorts the table.
CREATE INDEX marqtune_evaluations_created ON marqtune_evaluations (created_at, id);
