-- Verdicts a reader flagged as wrong on an evaluation: one per (evaluation, instance, input),
-- the flag (the person's and the judge's verdicts, a note, when) as JSON. Kept apart from the
-- evaluation's instances, so storing the evaluation again (a general-task score added) keeps them.
CREATE TABLE IF NOT EXISTS verdict_flags (
    slug TEXT NOT NULL,
    instance BIGINT NOT NULL,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (slug, instance, kind)
);
