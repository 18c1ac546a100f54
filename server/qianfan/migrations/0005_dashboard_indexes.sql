-- The dashboard's read model (server/qianfan/views.py): tasks of every tenant paged by
-- (created_at, id), and a task's cases sorted or filtered on the judge's score. Without
-- them a page of 100,000 tasks sorts the table, and a judge-sorted page of a
-- 100,000-case task sorts every case. One more b-tree insert per row written each.
CREATE INDEX qianfan_evals_created ON qianfan_evals (created_at, id);
CREATE INDEX qianfan_results_judge ON qianfan_results (eval_id, judge_score, unit_idx, case_idx);
-- A task's failed inferences (the run page's count, its "failed only" filter, and the
-- store's failedCases): a partial index holds only those rows.
CREATE INDEX qianfan_results_errors ON qianfan_results (eval_id, unit_idx, case_idx)
    WHERE error IS NOT NULL;
