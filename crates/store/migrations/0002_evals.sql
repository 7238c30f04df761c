-- Batch evaluations (`safeedit eval`): the run with its metric table, and every instance's
-- responses and verdicts.
CREATE TABLE IF NOT EXISTS evals (
    slug TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    method TEXT NOT NULL,
    data TEXT NOT NULL,
    model TEXT NOT NULL,
    instances BIGINT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evals_updated ON evals (updated_at);

CREATE TABLE IF NOT EXISTS eval_instances (
    slug TEXT NOT NULL,
    id BIGINT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (slug, id)
);
