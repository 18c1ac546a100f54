-- eval.results in the layout of every Spice release with the scorers evaldock ships
-- (spiceai/spiceai PR #4835, Feb 2025): `actual` is the model's answer and `expected`
-- the ideal. Until now `output` held the answer and `actual` the ideal (the v1.0.x
-- layout); renaming keeps every stored row, each text under its new name.
ALTER TABLE spice_results RENAME COLUMN actual TO expected;
ALTER TABLE spice_results RENAME COLUMN output TO actual;
