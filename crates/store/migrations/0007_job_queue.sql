-- The model whose queue a job is in (several apps with different models may share a database);
-- jobs recorded before this column have none and belong to whichever app takes them.
ALTER TABLE jobs ADD COLUMN queue TEXT;
