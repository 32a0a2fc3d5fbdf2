CREATE TABLE lockout (
    identity      TEXT COLLATE "C" PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    pending       BIGINT NOT NULL,
    pending_since BIGINT NOT NULL,
    locked_until  BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
