-- JWT mappings (admin-api.md §3.4): the issuers the JWT grant trusts and how their tokens map
-- to identities. Names compare byte by byte (BINARY), as PostgreSQL's "C" collation does, so
-- that both list them in the same order.
CREATE TABLE jwt_mappings (
    name          TEXT PRIMARY KEY,
    issuer_uri    TEXT NOT NULL,
    jwks_uri      TEXT,
    purpose_field TEXT NOT NULL,
    purpose_match TEXT NOT NULL,
    id_field      TEXT NOT NULL,
    id_match      TEXT NOT NULL,
    grantee       TEXT
);
