-- What generated each unit's answers, fixed at eval/create: the served model (the name the
-- judge engine sends to its server) and the judge engine's generation signature. Both ""
-- when the dataset gives every prediction (no model ran); NULL for a task created before.
ALTER TABLE qianfan_units ADD COLUMN served_model TEXT;
ALTER TABLE qianfan_units ADD COLUMN generation_signature TEXT;
