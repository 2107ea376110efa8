-- Migration 0008: successor authids (Akeeba's refresh URL hands out a new authid on every
-- refresh, so a URL that reached a log is worthless once its successor is used).
--
-- A successor's row is `status = 'standby'`: it holds a sealed copy of its predecessor's grant
-- as of `predecessor_version`. Its first use takes over in one transaction: the predecessor
-- becomes `status = 'replaced'` (its ciphertext wiped) only if it is unchanged since that
-- version and not mid-refresh, and the successor becomes 'active'. So at any time exactly one
-- row may refresh a grant. docs/storage.md "Successors".
ALTER TABLE grants ADD COLUMN successor TEXT;               -- key_hash of the pending standby successor, if any
ALTER TABLE grants ADD COLUMN predecessor TEXT;             -- standby rows: key_hash of the row they replace
ALTER TABLE grants ADD COLUMN predecessor_version INTEGER;  -- standby rows: that row's version when copied
