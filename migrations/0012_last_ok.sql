-- Migration 0012: when each grant last refreshed successfully, for its holder's status page
-- (`/status`, src/status.rs): the idle limits of Google, Microsoft and Box count from a refresh
-- token's last use. Written by the same compare-and-swap UPDATE that stores a refreshed (or
-- re-authorized) grant, so it costs no statement of its own. NULL: not refreshed since the
-- login (or since this column exists); the status then counts from `created_at`.
ALTER TABLE grants ADD COLUMN last_ok_at INTEGER; -- unix seconds of the last successful refresh or re-authorization
