-- Access tokens revoked by another process on this database file (the command line), for the
-- running server to drop from its verify cache. The server polls the table (PRAGMA
-- data_version says when anything was committed) and its sweep prunes what it has read.
-- AUTOINCREMENT: sequence numbers are never reused, so a reader can tell a gap.
CREATE TABLE invalidations (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    digest BLOB NOT NULL
);
