CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    full_name     TEXT,
    email         TEXT,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE TABLE applications (
    client_id         TEXT PRIMARY KEY,
    name              TEXT NOT NULL DEFAULT '',
    vendor            TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    url               TEXT NOT NULL DEFAULT '',
    scope             TEXT NOT NULL,
    max_scope         TEXT NOT NULL,
    access_validity   INTEGER,
    grant_validity    INTEGER,
    renewable         INTEGER,
    unused_expiration INTEGER,
    created_at        INTEGER NOT NULL
);
CREATE TABLE rules (
    client_id       TEXT NOT NULL REFERENCES applications(client_id) ON DELETE CASCADE,
    trustee         TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    max_scope       TEXT,
    access_validity INTEGER,
    grant_validity  INTEGER,
    renewable       INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (client_id, trustee)
);
CREATE TABLE settings (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL
);
CREATE TABLE grants (
    id                TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL,
    identity          TEXT NOT NULL,
    granted_to        TEXT NOT NULL,
    scope             TEXT NOT NULL,
    issued_at         INTEGER NOT NULL,
    expires_at        INTEGER,
    renewable         INTEGER NOT NULL,
    access_validity   INTEGER NOT NULL,
    access_digest     BLOB NOT NULL UNIQUE,
    access_issued_at  INTEGER NOT NULL,
    access_expires_at INTEGER NOT NULL,
    refresh_digest    BLOB UNIQUE
);
CREATE INDEX grants_identity ON grants(identity);
CREATE INDEX grants_client ON grants(client_id);
CREATE INDEX grants_expires ON grants(expires_at);
CREATE INDEX grants_access_expires ON grants(access_expires_at);
CREATE TABLE retired_refresh (
    digest     BLOB PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    expires_at INTEGER
);
CREATE INDEX retired_refresh_grant ON retired_refresh(grant_id);
