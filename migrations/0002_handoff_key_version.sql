-- Migration 0002: the server-secret version a pending hand-off was sealed under.
--
-- The pending authid in fetch_tokens is now sealed under a key derived from the versioned
-- server secrets (src/seal.rs, ServerKeys::seal_handoff), so a secret rotation no longer
-- strands it; opening needs the version. Nullable: rows written before this migration
-- (at most 15 minutes old, sealed the old way) have none and answer "No such entry".
ALTER TABLE fetch_tokens ADD COLUMN key_version INTEGER;
