-- Key and name columns use the "C" collation: byte-wise comparison and ordering, as SQLite's
-- default. User names are unique case-insensitively in ASCII, as SQLite's NOCASE.
CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL,
    full_name     TEXT,
    email         TEXT,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_name_nocase ON users (lower(name));
CREATE TABLE applications (
    client_id         TEXT COLLATE "C" PRIMARY KEY,
    name              TEXT NOT NULL DEFAULT '',
    vendor            TEXT NOT NULL DEFAULT '',
    description       TEXT NOT NULL DEFAULT '',
    url               TEXT NOT NULL DEFAULT '',
    scope             TEXT NOT NULL,
    max_scope         TEXT NOT NULL,
    access_validity   BIGINT,
    grant_validity    BIGINT,
    renewable         BOOLEAN,
    unused_expiration BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE TABLE rules (
    client_id       TEXT COLLATE "C" NOT NULL REFERENCES applications(client_id) ON DELETE CASCADE,
    trustee         TEXT COLLATE "C" NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    max_scope       TEXT,
    access_validity BIGINT,
    grant_validity  BIGINT,
    renewable       BOOLEAN,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (client_id, trustee)
);
CREATE TABLE settings (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    doc TEXT NOT NULL
);
CREATE TABLE grants (
    id                TEXT COLLATE "C" PRIMARY KEY,
    client_id         TEXT COLLATE "C" NOT NULL,
    identity          TEXT COLLATE "C" NOT NULL,
    granted_to        TEXT NOT NULL,
    scope             TEXT NOT NULL,
    issued_at         BIGINT NOT NULL,
    expires_at        BIGINT,
    renewable         BOOLEAN NOT NULL,
    access_validity   BIGINT NOT NULL,
    access_digest     BYTEA NOT NULL UNIQUE,
    access_issued_at  BIGINT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    refresh_digest    BYTEA UNIQUE
);
CREATE INDEX grants_identity ON grants(identity);
CREATE INDEX grants_client ON grants(client_id);
CREATE INDEX grants_expires ON grants(expires_at);
CREATE INDEX grants_access_expires ON grants(access_expires_at);
CREATE TABLE retired_refresh (
    digest     BYTEA PRIMARY KEY,
    grant_id   TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT
);
CREATE INDEX retired_refresh_grant ON retired_refresh(grant_id);
