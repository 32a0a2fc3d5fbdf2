CREATE TABLE lockout (
    identity      TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    window_start  INTEGER NOT NULL,
    pending       INTEGER NOT NULL,
    pending_since INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL,
    version       INTEGER NOT NULL
);
