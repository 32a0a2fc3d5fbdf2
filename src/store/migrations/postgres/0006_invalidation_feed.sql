-- Nothing to create: PostgreSQL processes announce revoked tokens with NOTIFY
-- (store/postgres/feed.rs). The version exists so that both databases count alike.
SELECT 1;
