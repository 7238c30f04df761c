-- Runs: one row per stored result, the whole record as JSON plus the columns lists filter on.
CREATE TABLE IF NOT EXISTS runs (
    slug TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    split TEXT NOT NULL,
    instance BIGINT NOT NULL,
    model TEXT NOT NULL,
    layer BIGINT NOT NULL,
    ds_before DOUBLE PRECISION NOT NULL,
    ds_after DOUBLE PRECISION NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);

-- Jobs: what was asked and how it ended, so a restart can mark unfinished ones failed.
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    request TEXT NOT NULL,
    status TEXT NOT NULL,
    run_slug TEXT,
    message TEXT
);
