-- Migration 0004: how a login ends (src/login.rs, LoginEnding).
--
-- ending: JSON naming the client dialect's page or redirect that ends the login (an Akeeba
--   helper page, an OAuth 2.0 redirect, a device approval); NULL = the broker's result page,
--   which is also how rows written before this migration end. Secrets are never stored here,
--   only their hashes.
ALTER TABLE login_states ADD COLUMN ending TEXT;
