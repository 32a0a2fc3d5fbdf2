CREATE TABLE roles (
    grantee   TEXT NOT NULL,
    role      INTEGER NOT NULL,
    client_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (grantee, role, client_id)
);
