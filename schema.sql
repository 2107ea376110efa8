-- oauth-broker — the full D1 schema (migrations/ holds the same, step by step).
-- Storage layout, what is secret and how it is protected: docs/storage.md.

-- One row per stored (v1) authid. Nothing here reveals a token, an account or the authid:
-- the key is an HMAC of the authid's keyid under a server secret, the grant is sealed with
-- AES-256-GCM under a key derived from the authid's secret half (never stored).
CREATE TABLE IF NOT EXISTS grants (
  key_hash     TEXT PRIMARY KEY,            -- hex HMAC-SHA256(lookup key of key_version, keyid)
  provider     TEXT NOT NULL,               -- provider id (bound into the AAD)
  key_version  INTEGER NOT NULL,            -- server-secret version used for key_hash and seal
  nonce        TEXT NOT NULL,               -- base64, 96 random bits, fresh on every write
  ciphertext   TEXT NOT NULL,               -- base64 AES-256-GCM(grant JSON) incl. tag
  version      INTEGER NOT NULL DEFAULT 1,  -- bumped on every write (compare-and-swap)
  lease_until  INTEGER NOT NULL DEFAULT 0,  -- unix seconds: an upstream refresh is in flight until then
  lease_id     TEXT,                        -- random id of the request holding the lease
  status       TEXT NOT NULL DEFAULT 'active', -- non-secret: 'active' | 'reauth_required'
  created_at   INTEGER NOT NULL,            -- unix seconds
  updated_at   INTEGER NOT NULL             -- unix seconds
) STRICT;

-- Logins in progress: single use (the row is deleted when the callback consumes it), 10-minute TTL.
CREATE TABLE IF NOT EXISTS login_states (
  state_hash       TEXT PRIMARY KEY,        -- hex SHA-256 of the state parameter
  provider         TEXT NOT NULL,
  binding_hash     TEXT NOT NULL,           -- hex SHA-256 of the __Host- cookie value
  token_version    INTEGER NOT NULL,        -- 1 = stored grant, 2 = pass-through authid
  fetch_token_hash TEXT,                    -- fetch_tokens.token_hash of the UI's token, if any
  expires_at       INTEGER NOT NULL         -- unix seconds
) STRICT;
CREATE INDEX IF NOT EXISTS login_states_expiry ON login_states (expires_at);

-- Duplicati's old UI hand-off (/fetch): the authid a login made, sealed under a key
-- derived from the UI's token and the server secret; handed out once; 15-minute TTL.
CREATE TABLE IF NOT EXISTS fetch_tokens (
  token_hash TEXT PRIMARY KEY,              -- hex SHA-256("oauth-broker/v1/fetch-token|" || token)
  nonce      TEXT,                          -- base64; NULL until the login completes
  ciphertext TEXT,                          -- base64 AES-256-GCM(authid); NULL until ready / after collection
  collected  INTEGER NOT NULL DEFAULT 0,    -- 1 once /fetch handed the authid out
  expires_at INTEGER NOT NULL               -- unix seconds
) STRICT;
CREATE INDEX IF NOT EXISTS fetch_tokens_expiry ON fetch_tokens (expires_at);

-- Migration 0002: server-secret version of the sealed authid (NULL until the login completes,
-- and for rows sealed before the hand-off moved under the versioned server keys).
ALTER TABLE fetch_tokens ADD COLUMN key_version INTEGER;

-- Migration 0003: the browser that registered a hand-off and the user's confirmation.
ALTER TABLE fetch_tokens ADD COLUMN binding_hash TEXT;          -- hex SHA-256 of the __Host-broker-handoff cookie (domain-separated)
ALTER TABLE fetch_tokens ADD COLUMN confirm_hash TEXT;          -- hex SHA-256 of the result page's confirmation token; NULL once used
ALTER TABLE fetch_tokens ADD COLUMN confirm_expires_at INTEGER; -- unix seconds: the confirmation is accepted until then
ALTER TABLE fetch_tokens ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0; -- 1 once the user sent it; /fetch answers only then
CREATE UNIQUE INDEX IF NOT EXISTS fetch_tokens_confirm ON fetch_tokens (confirm_hash);

-- Migration 0004: how a login ends (src/login.rs LoginEnding): JSON, NULL = the result page.
ALTER TABLE login_states ADD COLUMN ending TEXT;                 -- never a secret, only hashes

-- Migration 0005: OAuth 2.0 authorization codes (src/authorize.rs): hashed, single use, 60 s.
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

-- Migration 0006: RFC 8628 device codes (src/device.rs): hashed, single use, 10 minutes.
CREATE TABLE IF NOT EXISTS device_codes (
  device_code_hash TEXT PRIMARY KEY,        -- hex SHA-256("oauth-broker/v1/device-code|" || device_code)
  user_code_hash   TEXT NOT NULL,           -- hex SHA-256("oauth-broker/v1/user-code|" || user code)
  provider         TEXT NOT NULL,           -- the client_id it was issued to (canonical provider id)
  status           TEXT NOT NULL,           -- pending | approved | denied
  poll_interval    INTEGER NOT NULL,        -- seconds; grows by 5 with every slow_down
  last_poll_at     INTEGER,                 -- unix seconds of the last poll
  key_version      INTEGER,                 -- NULL until approved
  nonce            TEXT,                    -- base64; NULL until approved
  ciphertext       TEXT,                    -- base64 AES-256-GCM(authid); NULL until approved
  expires_at       INTEGER NOT NULL         -- unix seconds
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS device_codes_user_code ON device_codes (user_code_hash);
CREATE INDEX IF NOT EXISTS device_codes_expiry ON device_codes (expires_at);

-- Migration 0007: `presented` counts only presentations that passed every check, hence its new
-- name; the sealed payload is the first answer (authid + first access token, src/redeem.rs).
ALTER TABLE authorization_codes RENAME COLUMN presented TO redeemed; -- successful presentations (1 = redeemed; more = replayed)
ALTER TABLE device_codes ADD COLUMN requested_from TEXT;              -- two-letter country the code was requested from, if known

-- Migration 0008: successor authids (Akeeba's refresh URL: a new authid on every refresh).
-- status gains 'standby' (a successor not used yet) and 'replaced' (a predecessor whose
-- successor was used; ciphertext wiped). docs/storage.md "Successors".
ALTER TABLE grants ADD COLUMN successor TEXT;               -- key_hash of the pending standby successor, if any
ALTER TABLE grants ADD COLUMN predecessor TEXT;             -- standby rows: key_hash of the row they replace
ALTER TABLE grants ADD COLUMN predecessor_version INTEGER;  -- standby rows: that row's version when copied

-- Migration 0009: several standby successors per grant, found by `predecessor` (the first used
-- takes over; its siblings become 'replaced'). `successor` is no longer written.
CREATE INDEX IF NOT EXISTS grants_predecessor ON grants (predecessor) WHERE predecessor IS NOT NULL;

-- Migration 0010: claim ids (a claim whose answer D1 lost is still known to be the request's).
-- device_codes.status gains 'collected' (the payload wiped; the row stays until it expires).
ALTER TABLE authorization_codes ADD COLUMN redeemed_by TEXT; -- claim id of the first successful presentation
ALTER TABLE device_codes ADD COLUMN collected_by TEXT;       -- claim id of the poll that collected it (status 'collected')
ALTER TABLE fetch_tokens ADD COLUMN collected_by TEXT;       -- claim id of the /fetch that collected it

-- Migration 0011: each grant's last upstream refresh (when, how it ended), for the doctor.
ALTER TABLE grants ADD COLUMN last_refresh_at INTEGER; -- unix seconds of the last upstream refresh
ALTER TABLE grants ADD COLUMN last_outcome TEXT;       -- ok | invalid_grant | client_rejected | failed | timeout | error

-- Migration 0012: each grant's last successful refresh (or re-authorization), for its status page.
ALTER TABLE grants ADD COLUMN last_ok_at INTEGER; -- unix seconds of the last successful refresh or re-authorization
