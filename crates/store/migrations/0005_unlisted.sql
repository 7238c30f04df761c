-- Runs left off every listing (/runs, Results, Mechanisms, test_ALL, instance pages): whoever
-- has the link still opens them.
CREATE TABLE IF NOT EXISTS unlisted (
    slug TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
