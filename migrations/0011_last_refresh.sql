-- Migration 0011: each grant's last upstream refresh, for the operator's doctor (`GET
-- /admin/status`, src/doctor.rs): when, and how it ended. Written by the same UPDATE that
-- stores the refreshed grant (compare-and-swap) or releases the lease after a failure, so it
-- costs no statement of its own, and nothing on the cache-hit path, which writes nothing.
ALTER TABLE grants ADD COLUMN last_refresh_at INTEGER; -- unix seconds of the last upstream refresh
ALTER TABLE grants ADD COLUMN last_outcome TEXT;       -- ok | invalid_grant | client_rejected | failed | timeout | error
