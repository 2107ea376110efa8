-- Migration 0010: one-time claims that survive a lost answer. A code's spend, a device
-- login's collection and a hand-off's collection each write the claiming request's random
-- claim id with the claim; when D1 commits the write but the answer is lost, the request reads
-- the id back and knows the claim was its own, so the broker's own failure never turns the
-- client's retry into a replay nor loses the authid. docs/storage.md "Redemption".
ALTER TABLE authorization_codes ADD COLUMN redeemed_by TEXT; -- claim id of the first successful presentation
ALTER TABLE device_codes ADD COLUMN collected_by TEXT;       -- claim id of the poll that collected it (status 'collected')
ALTER TABLE fetch_tokens ADD COLUMN collected_by TEXT;       -- claim id of the /fetch that collected it
