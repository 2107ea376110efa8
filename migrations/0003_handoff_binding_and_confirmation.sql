-- Migration 0003: a hand-off belongs to the browser that registered it and waits for the
-- user's confirmation (login CSRF on Duplicati's old UI: src/handoff.rs, docs/storage.md).
--
-- binding_hash: hex SHA-256("oauth-broker/v1/handoff-binding|" || __Host-broker-handoff cookie);
--   NULL for rows registered before this migration, which no browser can use any more.
-- confirm_hash, confirm_expires_at: the result page's single-use confirmation token, hashed
--   ("oauth-broker/v1/handoff-confirm|"), and until when it is accepted; NULL once used.
-- confirmed: 1 once the user sent the authid to Duplicati; /fetch answers only then.
ALTER TABLE fetch_tokens ADD COLUMN binding_hash TEXT;
ALTER TABLE fetch_tokens ADD COLUMN confirm_hash TEXT;
ALTER TABLE fetch_tokens ADD COLUMN confirm_expires_at INTEGER;
ALTER TABLE fetch_tokens ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS fetch_tokens_confirm ON fetch_tokens (confirm_hash);
