-- Migration 0007: failure-atomic redemption and the device page's provenance.
--
-- authorization_codes.presented becomes `redeemed`: it counts only presentations that passed
-- every check (client_id, redirect_uri, PKCE verifier, expiry), so a client's own mistake or an
-- expired code is never taken for a replay (RFC 6749 §4.1.2). The sealed payload of a code or
-- device row is now the first answer itself (authid + the login's first access token,
-- src/redeem.rs Issuance): a redemption answers from it and cannot fail after the code is spent.
ALTER TABLE authorization_codes RENAME COLUMN presented TO redeemed;
-- Where the device code was requested from (the request's two-letter country, from `cf`),
-- shown on the verification page so a user can tell a code somebody sent them.
ALTER TABLE device_codes ADD COLUMN requested_from TEXT;
