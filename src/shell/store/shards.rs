//! Which D1 database a statement goes to (`D1_SHARDS`, `crate::config`): the
//! vault (`super::vault::Vault`) sends an authid to its own shard's `grants`;
//! everything else uses shard 1 ([`first`]).
//!
//! A database is opened when a handler asks for it, with its own replica
//! session (`super::Db`); every one of them counts into the request's one
//! [`D1Work`], so `Server-Timing` sums every shard touched. A stored authid
//! names its shard (`crate::authid`): no directory is read.

use std::rc::Rc;

use worker::Env;

use super::{D1Work, Db};
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::Shard;
use crate::shell::faults::Faults;

/// The database of `shard`, or `None` when `D1_SHARDS` has no such shard.
pub(super) fn open(
    env: &Env,
    cfg: &Config,
    shard: Shard,
    work: &Rc<D1Work>,
    faults: Faults,
) -> Result<Option<Db>, BrokerError> {
    cfg.shard_binding(shard)?
        .map(|binding| Db::open(env, binding, work.clone(), faults))
        .transpose()
}

/// Shard 1: every table whose lookups carry no authid (logins, hand-offs,
/// authorization and device codes) and every grant minted before sharding.
pub fn first(
    env: &Env,
    cfg: &Config,
    work: &Rc<D1Work>,
    faults: Faults,
) -> Result<Db, BrokerError> {
    // `D1_SHARDS` always has a first entry (`crate::config::parse_shards`).
    open(env, cfg, Shard::FIRST, work, faults)?.ok_or(super::MISSING_BINDING)
}
