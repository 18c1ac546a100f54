-- What produced a run's scores (scorers, model, engines, evaldock's version), recorded
-- when it completes; eval.runs shows it as `signature`.
ALTER TABLE spice_runs ADD COLUMN signature TEXT;
