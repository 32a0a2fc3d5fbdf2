CREATE TABLE roles (
    grantee   TEXT COLLATE "C" NOT NULL,
    role      INTEGER NOT NULL,
    client_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (grantee, role, client_id)
);
