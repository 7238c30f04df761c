-- Mechanism analyses (`safeedit analyze`): the report with its settings, under a shareable slug.
CREATE TABLE IF NOT EXISTS analyses (
    slug TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    model TEXT NOT NULL,
    methods TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS analyses_created ON analyses (created_at);
