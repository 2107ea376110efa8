//! The purge of expired short-lived rows, run by the Cron Trigger
//! (`crate::shell::scheduled`): every table whose rows carry an `expires_at`
//! loses the rows whose time has come, so a row lives no longer than its TTL
//! (plus at most one trigger interval) even when no new row is ever inserted
//! into its table (which also clears them, `Db::insert_after_gc`). The tables
//! and their statements are data ([`PURGES`]); each runs on its own, so a
//! table that fails (a shard whose migrations lag) does not keep the others.
//! The reads never use an expired row either: each compares `expires_at`
//! (in SQL, or in the core before anything is decided). Which tables, when,
//! and why: `docs/storage.md`, "Expiry".

use super::{num, Db};
use crate::error::BrokerError;

/// One short-lived table and the statement that deletes its expired rows
/// (`?1` = now, unix seconds; a row expires *at* `expires_at`, as the core
/// reads it: `now >= expires_at` is expired).
pub struct Purge {
    pub table: &'static str,
    sql: &'static str,
}

/// Every short-lived table (`schema.sql`; each has an index on `expires_at`,
/// so a purge that finds nothing reads nothing).
pub const PURGES: &[Purge] = &[
    Purge {
        table: "login_states",
        sql: "DELETE FROM login_states WHERE expires_at <= ?1",
    },
    // Hand-offs, sealed authid and confirmation included: the confirmation's
    // own deadline (`confirm_expires_at`) is always before the row's.
    Purge {
        table: "fetch_tokens",
        sql: "DELETE FROM fetch_tokens WHERE expires_at <= ?1",
    },
    Purge {
        table: "authorization_codes",
        sql: "DELETE FROM authorization_codes WHERE expires_at <= ?1",
    },
    // Approved but uncollected device logins (a sealed authid) included.
    Purge {
        table: "device_codes",
        sql: "DELETE FROM device_codes WHERE expires_at <= ?1",
    },
];

impl Db {
    /// Deletes the rows of `purge`'s table that expired by `now`; how many.
    pub async fn purge_expired(&self, purge: &Purge, now: i64) -> Result<usize, BrokerError> {
        self.changes("purge_expired", purge.sql, &[num(now)]).await
    }
}
