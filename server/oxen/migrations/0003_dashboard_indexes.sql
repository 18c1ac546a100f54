-- The dashboard's read model (server/oxen/views.py) pages evaluations of every tenant and
-- repository by (created_at, id); without this index a page of 100,000 sorts the table.
CREATE INDEX oxen_evaluations_created ON oxen_evaluations (created_at, id);
