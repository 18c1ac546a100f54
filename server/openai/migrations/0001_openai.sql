-- Files uploaded with POST /v1/files, per tenant (key). `path` is the stored bytes under
-- <data>/openai/files/; times are Unix seconds, as OpenAI answers them.
CREATE TABLE openai_files (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    path TEXT NOT NULL
);
CREATE INDEX openai_files_tenant ON openai_files (tenant);
-- Evals: the data source config as answered (with `schema`), the testing criteria with
-- their ids ("<name>-<uuid>"), metadata. Lists page in rowid order (creation order).
CREATE TABLE openai_evals (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    metadata BLOB,
    config BLOB NOT NULL,
    criteria BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX openai_evals_tenant ON openai_evals (tenant);
-- Runs: what was asked (data_source echoed, metadata) and, once done, what came out
-- (counts, per-criterion results, usage, signature). The status is the job's (job_view).
CREATE TABLE openai_runs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    eval_id TEXT NOT NULL REFERENCES openai_evals (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    data_source BLOB NOT NULL,
    metadata BLOB,
    rows INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    counts BLOB,
    per_criteria BLOB,
    usage BLOB,
    signature BLOB
);
CREATE INDEX openai_runs_eval ON openai_runs (eval_id);
-- Output items: one per data-source row (idx, 0-based), its results per criterion and
-- its sample. `status` is pass or fail.
CREATE TABLE openai_items (
    run_id TEXT NOT NULL REFERENCES openai_runs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    item BLOB NOT NULL,
    results BLOB NOT NULL,
    sample BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE INDEX openai_items_status ON openai_items (run_id, status, idx);
