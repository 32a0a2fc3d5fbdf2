-- The token pair a refresh answered, sealed with a key only the presented (old) refresh token
-- yields, kept for the refresh grace window (tokens.refresh_grace_secs): a client that lost the
-- answer and retries with the old token gets the same pair. Rows live seconds; the sweep
-- removes them once past `until`.
CREATE TABLE refresh_successors (
    digest   BYTEA PRIMARY KEY,
    grant_id TEXT COLLATE "C" NOT NULL,
    sealed   BYTEA NOT NULL,
    until    BIGINT NOT NULL
);
CREATE INDEX refresh_successors_until ON refresh_successors(until);
