-- Evaluations: the request as accepted (v1 or v2 body), what it resolved to, and its
-- outcome. The job row (same id, read through job_view) holds status and progress.
CREATE TABLE oxen_evaluations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    repo_id INTEGER NOT NULL REFERENCES oxen_repos (id) ON DELETE CASCADE,
    api_version INTEGER NOT NULL,
    request TEXT NOT NULL,
    source_version TEXT NOT NULL,
    source_path TEXT NOT NULL,
    source_commit TEXT NOT NULL,
    model_ran TEXT NOT NULL DEFAULT '',
    engine_signature TEXT NOT NULL DEFAULT '',
    closing_commit TEXT,
    conflict_target_branch TEXT,
    error_message TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    results_blob TEXT,
    commit_started_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX oxen_evaluations_repo ON oxen_evaluations (repo_id, created_at);
