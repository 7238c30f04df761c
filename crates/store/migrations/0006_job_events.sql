-- Jobs run by worker processes on other machines: every event of a job (the progress stream a
-- browser follows) in order, and the cancel flag the worker running it checks.
CREATE TABLE IF NOT EXISTS job_events (
    job TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (job, seq)
);
ALTER TABLE jobs ADD COLUMN cancel_requested BIGINT NOT NULL DEFAULT 0;
