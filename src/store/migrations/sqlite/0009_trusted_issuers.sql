-- The CAs trusted to issue client certificates (the certificate grant), one PEM certificate
-- each, named by the SHA-256 fingerprint of its DER form (64 lower-case hex digits).
CREATE TABLE trusted_issuers (
    fingerprint TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    pem         TEXT NOT NULL,
    added_at    INTEGER NOT NULL
);
