-- The dashboard's read model (server/openai/views.py) pages runs of every tenant and eval
-- by (created_at, id); without this index a page of 100,000 runs sorts the table.
CREATE INDEX openai_runs_created ON openai_runs (created_at, id);
-- A run's output items sorted or filtered on one criterion's score (results holds them
-- in the criteria's order): the first three criteria's scores, by expression, so a
-- score-sorted page 100,000 items deep walks an index instead of parsing and sorting
-- every item's JSON. The expressions must stay exactly as views.py writes them.
CREATE INDEX openai_items_score0
    ON openai_items (run_id, json_extract(CAST(results AS TEXT), '$[0].score'), idx);
CREATE INDEX openai_items_score1
    ON openai_items (run_id, json_extract(CAST(results AS TEXT), '$[1].score'), idx);
CREATE INDEX openai_items_score2
    ON openai_items (run_id, json_extract(CAST(results AS TEXT), '$[2].score'), idx);
