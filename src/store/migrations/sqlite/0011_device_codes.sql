-- Device authorization requests (RFC 8628, decisions.md §12): short-lived, not copied by
-- `store copy` (docs/console.md says why). The device code is kept only as its SHA-256.
CREATE TABLE device_codes (
    digest     BLOB PRIMARY KEY,
    user_code  TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    poll_interval INTEGER NOT NULL,
    last_poll  INTEGER,
    state      TEXT NOT NULL,
    identity   TEXT
);
CREATE INDEX device_codes_expires ON device_codes(expires_at);
