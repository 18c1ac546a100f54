CREATE TABLE objective_evaluations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    eval_name TEXT,
    judge TEXT NOT NULL,
    judge_signature TEXT NOT NULL,
    item_count INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX objective_evaluations_tenant ON objective_evaluations (tenant);
-- One row per (query, object) pair; `item` is the pair exactly as the client sent it.
CREATE TABLE objective_items (
    evaluation_id TEXT NOT NULL REFERENCES objective_evaluations (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    item BLOB NOT NULL,
    score INTEGER,
    label TEXT,
    explanation TEXT,
    error TEXT,
    PRIMARY KEY (evaluation_id, idx)
);
