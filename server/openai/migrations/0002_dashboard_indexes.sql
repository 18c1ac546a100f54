-- The dashboard's read model (server/openai/views.py) pages runs of every tenant and eval
-- by (created_at, id); without this index a page of 100,000 runs sorts the table.
CREATE INDEX openai_runs_created ON openai_runs (created_at, id);
