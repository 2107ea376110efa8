//! The purge of expired short-lived rows, run by the Cron Trigger
//! (`crate::shell::scheduled`): every table whose rows carry an `expires_at`
//! loses the rows whose time has come, so a row lives no longer than its TTL
//! (plus at most one trigger interval) even when no new row is ever inserted
//! into its table (which also clears them, `Db::insert_after_gc`). The tables
//! are `crate::storage::ShortLived`, their statements [`sql`]; each runs on
//! its own, so a table that fails (a shard whose migrations lag) does not keep the others.
//! The reads never use an expired row either: each compares `expires_at`
//! (in SQL, or in the core before anything is decided). Which tables, when,
//! and why: `docs/storage.md`, "Expiry".

use super::{num, Db};
use crate::error::BrokerError;
use crate::storage::{Expiry, ShortLived};

/// The statement that deletes `table`'s expired rows (`?1` = now, unix
/// seconds; a row expires *at* `expires_at`, as the core reads it:
/// `now >= expires_at` is expired). Every short-lived table (`schema.sql`;
/// each has an index on `expires_at`, so a purge that finds nothing reads
/// nothing).
fn sql(table: ShortLived) -> &'static str {
    match table {
        ShortLived::Logins => "DELETE FROM login_states WHERE expires_at <= ?1",
        // Hand-offs, sealed authid and confirmation included: the confirmation's
        // own deadline (`confirm_expires_at`) is always before the row's.
        ShortLived::Handoffs => "DELETE FROM fetch_tokens WHERE expires_at <= ?1",
        ShortLived::Codes => "DELETE FROM authorization_codes WHERE expires_at <= ?1",
        // Approved but uncollected device logins (a sealed authid) included.
        ShortLived::Devices => "DELETE FROM device_codes WHERE expires_at <= ?1",
    }
}

impl Expiry for Db {
    /// Deletes the rows of `table` that expired by `now`; how many.
    async fn purge_expired(&self, table: ShortLived, now: i64) -> Result<usize, BrokerError> {
        self.changes("purge_expired", sql(table), &[num(now)]).await
    }
}
