-- JWT mappings (admin-api.md §3.4): the issuers the JWT grant trusts and how their tokens map
-- to identities. "C": names compare byte by byte, as SQLite's BINARY does.
CREATE TABLE jwt_mappings (
    name          TEXT COLLATE "C" PRIMARY KEY,
    issuer_uri    TEXT NOT NULL,
    jwks_uri      TEXT,
    purpose_field TEXT NOT NULL,
    purpose_match TEXT NOT NULL,
    id_field      TEXT NOT NULL,
    id_match      TEXT NOT NULL,
    grantee       TEXT
);
