-- Datasets registered locally (extension endpoint or `evaldock qianfan add-dataset`);
-- tenant NULL: every access key sees it.
CREATE TABLE qianfan_datasets (
    id TEXT PRIMARY KEY,
    tenant TEXT,
    name TEXT NOT NULL,
    case_count INTEGER NOT NULL,
    with_predictions INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE qianfan_dataset_cases (
    dataset_id TEXT NOT NULL REFERENCES qianfan_datasets (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    reference TEXT NOT NULL,
    prediction TEXT,
    PRIMARY KEY (dataset_id, idx)
);
-- Evaluation tasks: num is the integer evalId, id the evalIdStr (ame-...) and the job id.
CREATE TABLE qianfan_evals (
    num INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    dataset_name TEXT NOT NULL,
    eval_mode TEXT NOT NULL,
    standard_conf BLOB NOT NULL,
    case_count INTEGER NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    metrics_signature TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX qianfan_evals_tenant ON qianfan_evals (tenant);
-- One unit per evaluated model version; metrics hold the report's rule numbers.
CREATE TABLE qianfan_units (
    eval_id TEXT NOT NULL REFERENCES qianfan_evals (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    report_id TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_version_id TEXT NOT NULL,
    model_num INTEGER NOT NULL,
    model_version_num INTEGER NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    backend TEXT,
    metrics BLOB,
    PRIMARY KEY (eval_id, idx)
);
-- One row per (unit, case) once inferred; error set when the inference failed;
-- judge_score stays NULL until judge mode (the second Qianfan issue) scores it.
CREATE TABLE qianfan_results (
    eval_id TEXT NOT NULL REFERENCES qianfan_evals (id) ON DELETE CASCADE,
    unit_idx INTEGER NOT NULL,
    case_idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    prediction TEXT,
    error TEXT,
    accuracy REAL,
    f1_score REAL,
    rouge_1 REAL,
    rouge_2 REAL,
    rouge_l REAL,
    bleu4 REAL,
    judge_score REAL,
    PRIMARY KEY (eval_id, unit_idx, case_idx)
);
-- Result exports: a job whose id is the export id; the zip lies at <data>/qianfan/exports.
CREATE TABLE qianfan_exports (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    eval_id TEXT NOT NULL REFERENCES qianfan_evals (id) ON DELETE CASCADE,
    content BLOB NOT NULL,
    created_at TEXT NOT NULL
);
