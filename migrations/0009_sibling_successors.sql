-- Migration 0009: a grant may have several standby successors at once (two refreshes at
-- Akeeba's door at the same moment each hand out one; the client keeps either). Each is
-- found by its predecessor, not by a pointer on the predecessor: the first to be used
-- takes over and turns its siblings into 'replaced' tombstones. `grants.successor` is no
-- longer written (kept, always NULL from now on, so the previous release still runs).
-- docs/storage.md "Successors".
CREATE INDEX IF NOT EXISTS grants_predecessor ON grants (predecessor) WHERE predecessor IS NOT NULL;
