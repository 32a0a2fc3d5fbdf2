-- The CAs trusted to issue client certificates (the certificate grant), one PEM certificate
-- each, named by the SHA-256 fingerprint of its DER form (64 lower-case hex digits).
CREATE TABLE trusted_issuers (
    fingerprint TEXT COLLATE "C" PRIMARY KEY,
    subject     TEXT NOT NULL,
    pem         TEXT NOT NULL,
    added_at    BIGINT NOT NULL
);
