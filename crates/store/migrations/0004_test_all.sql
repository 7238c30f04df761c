-- SafeEdit_test_ALL runs (`safeedit eval --test-all`): every model's metrics and the mean ± std
-- over them, under a shareable slug.
CREATE TABLE IF NOT EXISTS test_all_runs (
    slug TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    method TEXT NOT NULL,
    model TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS test_all_runs_created ON test_all_runs (created_at);
