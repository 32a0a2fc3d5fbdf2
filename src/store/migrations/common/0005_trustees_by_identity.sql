-- Rules and role assignments name identities, not names (decisions.md §11): a trustee or
-- grantee `local:NAME` (in any case) of an existing local user becomes `local:{uuid}` of that
-- user, so that a later user who reuses the name inherits nothing. Names of no local user stay.
-- `lower` folds ASCII only on both databases, as the case-insensitive user-name index does.

-- A row that would collide with one already naming the identity (or with another spelling of
-- the same name, of which the smallest stays) goes first.
DELETE FROM rules
WHERE lower(trustee) NOT LIKE 'local:{%'
  AND EXISTS (
    SELECT 1 FROM users u, rules r2
    WHERE lower(rules.trustee) = 'local:' || lower(u.name)
      AND r2.client_id = rules.client_id
      AND (r2.trustee = 'local:{' || u.id || '}'
           OR (lower(r2.trustee) = lower(rules.trustee) AND r2.trustee < rules.trustee)));

UPDATE rules
SET trustee = (SELECT 'local:{' || u.id || '}' FROM users u
               WHERE lower(rules.trustee) = 'local:' || lower(u.name))
WHERE lower(trustee) NOT LIKE 'local:{%'
  AND EXISTS (SELECT 1 FROM users u WHERE lower(rules.trustee) = 'local:' || lower(u.name));

DELETE FROM roles
WHERE lower(grantee) NOT LIKE 'local:{%'
  AND EXISTS (
    SELECT 1 FROM users u, roles r2
    WHERE lower(roles.grantee) = 'local:' || lower(u.name)
      AND r2.role = roles.role
      AND r2.client_id = roles.client_id
      AND (r2.grantee = 'local:{' || u.id || '}'
           OR (lower(r2.grantee) = lower(roles.grantee) AND r2.grantee < roles.grantee)));

UPDATE roles
SET grantee = (SELECT 'local:{' || u.id || '}' FROM users u
               WHERE lower(roles.grantee) = 'local:' || lower(u.name))
WHERE lower(grantee) NOT LIKE 'local:{%'
  AND EXISTS (SELECT 1 FROM users u WHERE lower(roles.grantee) = 'local:' || lower(u.name));
