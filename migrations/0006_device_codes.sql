-- Migration 0006: device authorization grants (src/device.rs, RFC 8628).
--
-- The device code is 256 random bits, the user code 8 letters; only their hashes are stored.
-- Once the user's login finishes, the authid is sealed under a key derived from the device
-- code's hash and the server secret (src/seal.rs, Pending::DeviceCode); the row is deleted
-- when the device collects it (single use). 10-minute TTL.
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
