-- A `waiting` state (a job paused for outside input, e.g. Qianfan's manual scores), and
-- the documented view surfaces read job state through instead of the table itself.
CREATE TABLE jobs_v2 (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    tenant TEXT,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
    processed INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL
);
INSERT INTO jobs_v2 SELECT id, kind, tenant, status, processed, total, attempts, error,
    cancel_requested, created_at, started_at, finished_at, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE INDEX jobs_queue ON jobs (status, created_at);
CREATE INDEX jobs_kind ON jobs (kind, status);
-- What a surface may read of a job (JobView in server/jobs.py).
CREATE VIEW job_view AS
    SELECT id, kind, tenant, status, processed, total, attempts, error,
           created_at, started_at, finished_at
    FROM jobs;
