//! The Cron Trigger (`[triggers] crons` in `wrangler.toml`): each run purges
//! the expired rows of every short-lived table (`store::purge`) on every D1
//! shard in `D1_SHARDS`. The short-lived tables are written on shard 1 only,
//! but every shard has the whole schema, and a purge that finds nothing costs
//! an index lookup, so no shard is assumed empty. Nothing here can panic; a
//! shard or a table that fails is logged and the run goes on with the next.
//! One JSON log line per run: rows deleted per table (summed over the
//! shards), the shards, the failures (shard, table, D1's message, which
//! names tables and columns, never a bound value) and the D1 work. Background:
//! `docs/storage.md`, "Expiry".

use std::rc::Rc;

use serde_json::{json, Map, Value};
use worker::Env;

use super::faults::Faults;
use super::store::{D1Work, Db};
use super::{bindings, clock, log};
use crate::storage::{Expiry as _, ShortLived};

/// Runs the purge for the trigger `cron` and logs what it did.
pub async fn run(cron: &str, env: Env) {
    let started = clock::now_ms();
    let cfg = bindings::config(&env, String::new());
    let work = Rc::new(D1Work::default());
    let mut deleted: Vec<usize> = vec![0; ShortLived::ALL.len()];
    let mut failures: Vec<Value> = Vec::new();
    let shards = match cfg.shards() {
        Ok(shards) => shards,
        Err(e) => {
            failures.push(json!({ "cause": e.cause().unwrap_or_default() }));
            &[]
        }
    };
    for (i, binding) in shards.iter().enumerate() {
        let shard = i + 1;
        let db = match Db::open(&env, binding, work.clone(), Faults::default()) {
            Ok(db) => db,
            Err(e) => {
                failures.push(json!({ "shard": shard, "cause": e.cause().unwrap_or_default() }));
                continue;
            }
        };
        for (table, count) in ShortLived::ALL.into_iter().zip(deleted.iter_mut()) {
            match db.purge_expired(table, cfg.now).await {
                Ok(n) => *count = count.saturating_add(n),
                Err(e) => failures.push(json!({
                    "shard": shard,
                    "table": table.table(),
                    "cause": e.cause().unwrap_or_default(),
                })),
            }
        }
    }
    let per_table: Map<String, Value> = ShortLived::ALL
        .iter()
        .zip(&deleted)
        .map(|(table, n)| (table.table().to_string(), json!(n)))
        .collect();
    let (_, statements, writes) = work.counts();
    let failures_empty = failures.is_empty();
    let fields = json!({
        "cron": cron,
        "deleted": per_table,
        "shards": shards.len(),
        "failures": failures,
        "d1": { "statements": statements, "writes": writes },
        "duration_ms": clock::now_ms().saturating_sub(started),
    });
    let level = match failures_empty {
        true => log::Level::Info,
        false => log::Level::Error,
    };
    log::write(level, "purge_expired", fields);
}
