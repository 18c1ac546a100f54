-- The dashboard's read model (server/objective/views.py) pages evaluations of every
-- tenant by (created_at, id); without this index a page of 100,000 sorts the table.
CREATE INDEX objective_evaluations_created ON objective_evaluations (created_at, id);
