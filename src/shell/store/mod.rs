//! D1 access: the only code that writes SQL. Every statement is prepared with
//! bound parameters. A failing statement becomes `StorageUnavailable` (500,
//! retryable) carrying the operation and D1's message for the log (D1's
//! messages name tables and columns, never bound values).
//!
//! - [`vault`]: the `grants` table behind the server keys (speaks `AuthId`/`Grant`).
//! - [`logins`]: `login_states`, logins in progress.
//! - [`handoffs`]: `fetch_tokens`, Duplicati's old-UI hand-off.
//! - [`codes`]: `authorization_codes`, the OAuth 2.0 authorization endpoint's codes.
//! - [`devices`]: `device_codes`, RFC 8628 device authorizations.
//! - [`shards`]: which database each of those lives in.
//! - [`purge`]: the Cron Trigger's purge of the short-lived tables' expired rows.
//!
//! Each table's file implements its trait of the core's storage contract
//! (`crate::storage`) directly; the handlers call through the traits.
//! Why, and how D1 gives each guarantee: `docs/storage.md`.
//!
//! Where each table lives (sharding; the contract: `D1_SHARDS` in
//! `crate::config`, the authid's tag in `crate::authid`): grants are spread
//! over N D1 databases, each with the full schema (the same `migrations/`).
//! A new grant goes to a shard drawn uniformly at random, and its authid
//! carries the shard (`s<k>:` for k >= 2, untagged for shard 1), so finding a
//! grant reads no directory: parsing the authid names the database, and
//! [`vault::Vault::grant`] opens that shard's `grants`. Authids minted before
//! sharding, and the Duplicati services' spellings (grants moved in lazily from oauth-handler),
//! are untagged and so live on shard 1, where they always were; adding a
//! shard (appending a binding to `D1_SHARDS`) moves nothing. `login_states`,
//! `fetch_tokens`, `authorization_codes` and `device_codes` stay on shard 1:
//! their lookups carry no authid (a state, a token, a code), only a hash that
//! could not name a shard, and they are short-lived and few next to grants.
//! Everything but the vault uses shard 1 (`Call::db`); the Cron Trigger's
//! [`purge`] visits every shard.
//!
//! Where a statement goes (D1 read replication, the Sessions API): a read
//! named [`ReadFrom::Replica`] runs in the request's `first-unconstrained`
//! session (the nearest replica), opened on first use; everything else (every
//! write, and every read that decides something) runs on the binding outside
//! any session, which D1 always runs on the primary. (A `first-primary`
//! session would only pin its *first* statement there: D1 may answer its later
//! reads, a waiter's polls, from a replica.) Which read goes where is decided
//! in `crate::refresh` ([`crate::refresh::trust`]), not here. Without replicas
//! (`wrangler dev`, a database with replication off) both reach the one
//! database. Each shard's [`Db`] has its own replica session.
//!
//! Every statement is counted ([`D1Work`]), one count for all the shards a
//! request touched: the `Server-Timing` header reports it when `SERVER_TIMING=1`.

pub mod codes;
pub mod devices;
pub mod handoffs;
pub mod logins;
pub mod purge;
pub mod shards;
pub mod vault;

use std::cell::OnceCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1DatabaseSession, D1PreparedStatement, D1SessionConstraint, Env};

use super::faults::Faults;
use crate::d1work::is_write;
pub use crate::d1work::D1Work;
use crate::error::BrokerError;
use crate::ids::ClaimId;
pub use crate::refresh::ReadFrom;

/// The request's replica session, opened on first use (`None`: the runtime
/// has no Sessions API or refused it; then the binding, i.e. the primary).
type ReplicaSession = OnceCell<Option<D1DatabaseSession>>;

/// One shard's D1 binding (shared: a refresh that outlives its request keeps
/// it), with the request's replica session on it and the request's count of
/// D1 work.
#[derive(Clone)]
pub struct Db {
    d1: Rc<D1Database>,
    replica: Rc<ReplicaSession>,
    work: Rc<D1Work>,
    /// The request's injected faults (`super::faults`; test builds only).
    #[cfg(feature = "fault-injection")]
    faults: Faults,
}

/// A binding `D1_SHARDS` names (by default `DB`) is not bound.
const MISSING_BINDING: BrokerError = BrokerError::Misconfigured {
    what: "a D1 binding in D1_SHARDS (default DB) is missing",
};

/// A number as D1 binds it (JavaScript has only doubles; our values are far below 2^53).
pub fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

/// `StorageUnavailable` for the operation `op` that failed with `e`.
fn failed(op: &'static str) -> impl FnOnce(worker::Error) -> BrokerError {
    move |e| {
        BrokerError::storage(format!(
            "d1 {op}: {}",
            BrokerError::one_line(&e.to_string())
        ))
    }
}

impl Db {
    /// The D1 binding named `binding`; its statements are counted in `work`
    /// and fail as `faults` says (never, in a release build).
    pub fn open(
        env: &Env,
        binding: &str,
        work: Rc<D1Work>,
        faults: Faults,
    ) -> Result<Db, BrokerError> {
        // A release build has no faults: nothing is kept, nothing checked.
        #[cfg(not(feature = "fault-injection"))]
        let _ = faults;
        env.d1(binding)
            .map(|d| Db {
                d1: Rc::new(d),
                replica: Rc::default(),
                work,
                #[cfg(feature = "fault-injection")]
                faults,
            })
            .map_err(|_| MISSING_BINDING)
    }

    /// The session for `from`: the replica session for a replica read, none
    /// (the primary) for everything else.
    fn session(&self, from: ReadFrom) -> Option<&D1DatabaseSession> {
        match from {
            ReadFrom::Replica => self
                .replica
                .get_or_init(|| {
                    self.d1
                        .with_session_constraint(D1SessionConstraint::FirstUnconstrained)
                        .ok()
                })
                .as_ref(),
            ReadFrom::Primary => None,
        }
    }

    fn statement(
        &self,
        from: ReadFrom,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<D1PreparedStatement, BrokerError> {
        let prepared = match self.session(from) {
            Some(session) => session.prepare(sql),
            None => self.d1.prepare(sql),
        };
        prepared.bind(args).map_err(failed(op))
    }

    /// The first row of a query (or of a `… RETURNING` write), on the primary.
    async fn first<T: DeserializeOwned>(
        &self,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Option<T>, BrokerError> {
        self.first_from(ReadFrom::Primary, op, sql, args).await
    }

    /// Every row of a query, on the primary.
    async fn all<T: DeserializeOwned>(
        &self,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Vec<T>, BrokerError> {
        let statement = self.statement(ReadFrom::Primary, op, sql, args)?;
        #[cfg(feature = "fault-injection")]
        self.faults.before(op).map_err(failed(op))?;
        self.work.sent(ReadFrom::Primary, 1);
        let rows = statement
            .all()
            .await
            .and_then(|r| r.results())
            .map_err(failed(op))?;
        #[cfg(feature = "fault-injection")]
        self.faults.after(op).map_err(failed(op))?;
        Ok(rows)
    }

    /// The first row of a query, read from `from`.
    async fn first_from<T: DeserializeOwned>(
        &self,
        from: ReadFrom,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<Option<T>, BrokerError> {
        let statement = self.statement(from, op, sql, args)?;
        #[cfg(feature = "fault-injection")]
        self.faults.before(op).map_err(failed(op))?;
        self.work.sent(from, 1);
        let row: Option<T> = statement.first(None).await.map_err(failed(op))?;
        #[cfg(feature = "fault-injection")]
        self.faults.after(op).map_err(failed(op))?;
        if row.is_some() && is_write(sql) {
            // A `… RETURNING` write that found its row.
            self.work.wrote(1);
        }
        Ok(row)
    }

    /// The newest migration applied to this database (`d1_migrations`, which
    /// `wrangler d1 migrations apply` keeps): `None` when none was.
    pub async fn latest_migration(&self) -> Result<Option<String>, BrokerError> {
        #[derive(serde::Deserialize)]
        struct Applied {
            name: String,
        }
        let applied = self
            .first::<Applied>(
                "latest_migration",
                "SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await;
        match applied {
            Ok(row) => Ok(row.map(|r| r.name)),
            Err(e) if e.cause().is_some_and(|c| c.contains("no such table")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// This shard's live grants grouped by provider, status and the day of
    /// their last write (`crate::doctor::grant_health`): `(provider, status,
    /// unix day, count)`.
    pub async fn grant_groups(&self) -> Result<Vec<(String, String, i64, i64)>, BrokerError> {
        #[derive(serde::Deserialize)]
        struct Group {
            provider: String,
            status: String,
            day: i64,
            n: i64,
        }
        let rows: Vec<Group> = self
            .all(
                "grant_groups",
                "SELECT provider, status, updated_at / 86400 AS day, COUNT(*) AS n FROM grants \
                 WHERE status IN ('active', 'reauth_required') GROUP BY provider, status, day",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|g| (g.provider, g.status, g.day, g.n))
            .collect())
    }

    /// This shard's grants refreshed upstream since `since` (unix seconds),
    /// by provider and how their last refresh ended: `(provider, outcome, count)`.
    pub async fn last_refreshes(
        &self,
        since: i64,
    ) -> Result<Vec<(String, String, i64)>, BrokerError> {
        #[derive(serde::Deserialize)]
        struct Group {
            provider: String,
            last_outcome: String,
            n: i64,
        }
        let rows: Vec<Group> = self
            .all(
                "last_refreshes",
                "SELECT provider, last_outcome, COUNT(*) AS n FROM grants \
                 WHERE last_refresh_at > ?1 AND last_outcome IS NOT NULL \
                 GROUP BY provider, last_outcome",
                &[num(since)],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|g| (g.provider, g.last_outcome, g.n))
            .collect())
    }

    /// What a one-time claim D1 answered with `error` did: it may have
    /// committed with only its answer lost. Reads back, on the primary, the
    /// claim column of the row `key` (`sql` selects it as `claim` with
    /// `?1 = key`): if it names `claim`, the claim is this request's and
    /// stands (`Ok`); otherwise (it did not happen, or another request's
    /// came first) or if the read fails too, `error` stands.
    async fn claim_stands(
        &self,
        error: BrokerError,
        op: &'static str,
        sql: &str,
        key: &str,
        claim: &ClaimId,
    ) -> Result<(), BrokerError> {
        #[derive(serde::Deserialize)]
        struct Claimed {
            claim: Option<String>,
        }
        match self.first::<Claimed>(op, sql, &[key.into()]).await {
            // Not a secret: a random id that only says whose claim it was.
            Ok(Some(Claimed { claim: Some(by) })) if by == claim.as_str() => Ok(()),
            _ => Err(error),
        }
    }

    /// Runs one write statement (on the primary) and returns how many rows it changed.
    async fn changes(
        &self,
        op: &'static str,
        sql: &str,
        args: &[JsValue],
    ) -> Result<usize, BrokerError> {
        let statement = self.statement(ReadFrom::Primary, op, sql, args)?;
        #[cfg(feature = "fault-injection")]
        self.faults.before(op).map_err(failed(op))?;
        self.work.sent(ReadFrom::Primary, 1);
        let result = statement.run().await.map_err(failed(op))?;
        #[cfg(feature = "fault-injection")]
        self.faults.after(op).map_err(failed(op))?;
        let changed = result
            .meta()
            .ok()
            .flatten()
            .and_then(|m| m.changes)
            .unwrap_or(0);
        if changed > 0 {
            self.work.wrote(1);
        }
        Ok(changed)
    }

    /// Runs `statements` as one D1 batch (one transaction: all or nothing), on
    /// the primary; how many rows each changed.
    async fn batch(
        &self,
        op: &'static str,
        statements: &[(&str, &[JsValue])],
    ) -> Result<Vec<usize>, BrokerError> {
        let prepared = statements
            .iter()
            .map(|(sql, args)| self.statement(ReadFrom::Primary, op, sql, args))
            .collect::<Result<Vec<_>, _>>()?;
        #[cfg(feature = "fault-injection")]
        self.faults.before(op).map_err(failed(op))?;
        self.work.sent(
            ReadFrom::Primary,
            u32::try_from(prepared.len()).unwrap_or(u32::MAX),
        );
        let results = self.d1.batch(prepared).await.map_err(failed(op))?;
        #[cfg(feature = "fault-injection")]
        self.faults.after(op).map_err(failed(op))?;
        let changed: Vec<usize> = results
            .iter()
            .map(|r| r.meta().ok().flatten().and_then(|m| m.changes).unwrap_or(0))
            .collect();
        let wrote = changed.iter().filter(|n| **n > 0).count();
        self.work.wrote(u32::try_from(wrote).unwrap_or(u32::MAX));
        Ok(changed)
    }

    /// Runs `sql` after deleting the expired rows of `table`, in one batch (so
    /// expired single-use rows never pile up), on the primary.
    async fn insert_after_gc(
        &self,
        op: &'static str,
        table: &str,
        now: i64,
        sql: &str,
        args: &[JsValue],
    ) -> Result<(), BrokerError> {
        let gc_sql = format!("DELETE FROM {table} WHERE expires_at <= ?1");
        let gc = self.statement(ReadFrom::Primary, op, &gc_sql, &[num(now)])?;
        let insert = self.statement(ReadFrom::Primary, op, sql, args)?;
        #[cfg(feature = "fault-injection")]
        self.faults.before(op).map_err(failed(op))?;
        self.work.sent(ReadFrom::Primary, 2);
        self.work.wrote(2);
        self.d1.batch(vec![gc, insert]).await.map_err(failed(op))?;
        #[cfg(feature = "fault-injection")]
        self.faults.after(op).map_err(failed(op))?;
        Ok(())
    }
}
