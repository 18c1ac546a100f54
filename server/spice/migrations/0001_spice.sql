-- Eval specs added at run time (PUT /v1/evals/{name}), per tenant; the spicepod's own
-- specs live in the spicepod file.
CREATE TABLE spice_specs (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    dataset TEXT NOT NULL,
    scorers TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
-- Datasets uploaded with a spec (`data`) or named by file (`from`), per tenant.
-- `rows` is the JSON array of {input, ideal, output}; `source` the file: path, if any.
CREATE TABLE spice_datasets (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    rows BLOB,
    source TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
-- spice.eval.runs. The status is the job's (job_view); `spec` is what the run was asked
-- to do, kept so a run resumed after a restart does the same work.
CREATE TABLE spice_runs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    eval TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    scorers TEXT NOT NULL,
    metrics TEXT,
    error_message TEXT,
    spec BLOB NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX spice_runs_tenant ON spice_runs (tenant, created_at);
-- spice.eval.results: one row per case x scorer. As in the runtime, `output` holds the
-- model's output and `actual` the ideal. `tenant` is copied so SQL reads one table.
CREATE TABLE spice_results (
    run_id TEXT NOT NULL REFERENCES spice_runs (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    idx INTEGER NOT NULL,
    scorer TEXT NOT NULL,
    created_at TEXT NOT NULL,
    input TEXT,
    output TEXT,
    actual TEXT,
    value REAL,
    PRIMARY KEY (run_id, scorer, idx)
);
CREATE INDEX spice_results_tenant ON spice_results (tenant, run_id);
