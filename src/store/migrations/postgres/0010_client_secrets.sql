-- Client secrets of confidential applications (the OAuth 2.0 face): an argon2id PHC string,
-- at most one per application, gone with the application.
CREATE TABLE client_secrets (
    client_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES applications(client_id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
