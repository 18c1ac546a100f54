-- Datasets: the file lives in <data>/marqtune/datasets/<id>/; validation is a job whose
-- id is the dataset id (no job row yet = still waiting for the upload).
CREATE TABLE marqtune_datasets (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    dataset_type TEXT NOT NULL,
    data_schema BLOB NOT NULL,
    query_columns BLOB,
    result_columns BLOB,
    image_download_headers BLOB,
    normalize_urls INTEGER NOT NULL,
    file_format TEXT,
    file_size INTEGER,
    stats BLOB,
    uploaded_at TEXT,
    deleted_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX marqtune_datasets_tenant ON marqtune_datasets (tenant);
-- Evaluations: the job id is the evaluation id; metrics are stored unrounded.
CREATE TABLE marqtune_evaluations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    model TEXT NOT NULL,
    model_id TEXT,
    checkpoint TEXT,
    load_model TEXT NOT NULL,
    load_pretrained TEXT,
    hyperparameters BLOB NOT NULL,
    metrics BLOB,
    ranker_signature TEXT,
    deleted_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX marqtune_evaluations_tenant ON marqtune_evaluations (tenant);
-- Models registered with `evaldock marqtune add-model` (tenant NULL: every key sees it).
-- Models of the [marqtune.models] table live in the configuration only.
CREATE TABLE marqtune_models (
    id TEXT PRIMARY KEY,
    tenant TEXT,
    name TEXT NOT NULL,
    base_model TEXT NOT NULL,
    checkpoints BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE marqtune_released_checkpoints (
    model_id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    released_at TEXT NOT NULL,
    PRIMARY KEY (model_id, checkpoint)
);
-- Log lines of any resource; ts (ms) is strictly increasing per resource, so a client
-- polling with from = last + 1 neither repeats nor skips a line.
CREATE TABLE marqtune_logs (
    resource_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (resource_id, ts)
);
