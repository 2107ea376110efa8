-- Migration 0005: OAuth 2.0 authorization codes (src/authorize.rs, RFC 6749 §4.1.2).
--
-- A code is 256 random bits, single use (counted on every presentation; a replay revokes the
-- authid it yielded, RFC 6749 §4.1.2), valid 60 s.
-- Only its hash is stored; the authid its login made is sealed under a key derived from the
-- code itself and the server secret (src/seal.rs, Pending::AuthorizationCode).
CREATE TABLE IF NOT EXISTS authorization_codes (
  code_hash      TEXT PRIMARY KEY,          -- hex SHA-256("oauth-broker/v1/authorization-code|" || code)
  provider       TEXT NOT NULL,             -- the client_id it was issued to (canonical provider id)
  redirect_uri   TEXT NOT NULL,             -- exactly as in the authorization request
  code_challenge TEXT,                      -- the client's PKCE S256 challenge, if it sent one
  key_version    INTEGER NOT NULL,          -- server-secret version of the seal
  nonce          TEXT NOT NULL,             -- base64 AES-GCM nonce
  ciphertext     TEXT NOT NULL,             -- base64 AES-256-GCM(authid)
  presented      INTEGER NOT NULL DEFAULT 0, -- times presented at the token endpoint (1 = redeemed; more = replayed)
  expires_at     INTEGER NOT NULL           -- unix seconds
) STRICT;
CREATE INDEX IF NOT EXISTS authorization_codes_expiry ON authorization_codes (expires_at);
