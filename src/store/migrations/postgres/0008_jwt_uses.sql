-- JWTs the JWT grant accepted, by a digest of their issuer and jti (never the token), kept until
-- they could no longer be accepted anyway: a token is used once, on every node of the store.
CREATE TABLE jwt_uses (
    digest     BYTEA PRIMARY KEY,
    used_until BIGINT NOT NULL
);
CREATE INDEX jwt_uses_until ON jwt_uses (used_until);
