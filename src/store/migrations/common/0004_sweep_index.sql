-- Fewer index pages per rotation: the sweep needs access expiry only for grants without a
-- refresh token (which are never rotated), and nothing looks retired digests up by grant.
DROP INDEX grants_access_expires;
CREATE INDEX grants_unrenewable_expires ON grants(access_expires_at) WHERE refresh_digest IS NULL;
DROP INDEX retired_refresh_grant;
