//! Frozen: the schemas of the previous release (751bf12), as its code applied them, so that the
//! upgrade tests start from what real databases hold. Never edit these to follow new
//! migrations.

/// SQLite, versions 1 to 4.
pub const SQLITE: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE roles (
    grantee   TEXT NOT NULL,
    role      INTEGER NOT NULL,
    client_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (grantee, role, client_id)
);
"#,
    r#"
CREATE TABLE lockout (
    identity      TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    pending       INTEGER NOT NULL,
    pending_since INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL,
    version       INTEGER NOT NULL
);
"#,
    r#"
DROP INDEX grants_access_expires;
CREATE INDEX grants_unrenewable_expires ON grants(access_expires_at) WHERE refresh_digest IS NULL;
DROP INDEX retired_refresh_grant;
"#,
];

/// PostgreSQL, versions 1 to 3.
pub const POSTGRES: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE roles (
    grantee   TEXT COLLATE "C" NOT NULL,
    role      INTEGER NOT NULL,
    client_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (grantee, role, client_id)
);
"#,
    r#"
CREATE TABLE lockout (
    identity      TEXT COLLATE "C" PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    pending       BIGINT NOT NULL,
    pending_since BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
"#,
];
