-- Judge mode: the referee's reason and per-dimension scores per case (judge_score -1: the
-- judge could not score it; NULL: not judged yet); the judge's signature per task.
ALTER TABLE qianfan_results ADD COLUMN judge_reason TEXT;
ALTER TABLE qianfan_results ADD COLUMN judge_dimensions BLOB;
ALTER TABLE qianfan_evals ADD COLUMN judge_signature TEXT NOT NULL DEFAULT '';
-- Manual mode: 1 once the person's final call (or the last missing score) arrived.
ALTER TABLE qianfan_evals ADD COLUMN manual_finished INTEGER NOT NULL DEFAULT 0;
-- Manual scores: per (unit, case, dimension) an integer on the dimension's scale or -1.
CREATE TABLE qianfan_manual_scores (
    eval_id TEXT NOT NULL REFERENCES qianfan_evals (id) ON DELETE CASCADE,
    unit_idx INTEGER NOT NULL,
    case_idx INTEGER NOT NULL,
    dimension TEXT NOT NULL,
    score INTEGER NOT NULL,
    PRIMARY KEY (eval_id, unit_idx, case_idx, dimension)
);
-- A person's subjective impression per model version (unit).
CREATE TABLE qianfan_impressions (
    eval_id TEXT NOT NULL REFERENCES qianfan_evals (id) ON DELETE CASCADE,
    unit_idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (eval_id, unit_idx)
);
