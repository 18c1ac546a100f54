-- The dashboard's read model (server/spice/views.py): runs paged by (created_at, id)
-- across tenants, and a run's cases filtered and sorted by one scorer's value. Each
-- index costs one more b-tree insert per row written; without them a page of 100,000
-- runs or cases sorts the whole table.
CREATE INDEX spice_runs_created ON spice_runs (created_at, id);
CREATE INDEX spice_results_scores ON spice_results (run_id, scorer, value, idx);
