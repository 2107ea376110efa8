//! Which D1 database a statement goes to (`D1_SHARDS`, `crate::config`): the
//! vault sends an authid to its own shard's `grants`; everything else uses
//! shard 1 ([`first`]).
//!
//! A database is opened when a handler asks for it, with its own replica
//! session (`super::Db`); every one of them counts into the request's one
//! [`D1Work`], so `Server-Timing` sums every shard touched. A stored authid
//! names its shard (`crate::authid`): no directory is read.

use std::rc::Rc;

use worker::Env;

use super::vault::StoredGrant;
use super::{D1Work, Db};
use crate::authid::AuthId;
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::Shard;
use crate::seal::ServerKeys;
use crate::shell::faults::Faults;

/// The database of `shard`, or `None` when `D1_SHARDS` has no such shard.
fn open(
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

/// The grants of every shard, opened with the server keys.
pub struct Vault {
    env: Env,
    cfg: Rc<Config>,
    work: Rc<D1Work>,
    keys: Rc<ServerKeys>,
    faults: Faults,
}

impl Vault {
    pub fn new(
        env: Env,
        cfg: Rc<Config>,
        work: Rc<D1Work>,
        keys: Rc<ServerKeys>,
        faults: Faults,
    ) -> Vault {
        Vault {
            env,
            cfg,
            work,
            keys,
            faults,
        }
    }

    /// The grant stored (or to be stored) under `authid`, on the shard it
    /// names. A shard the configuration lacks answers like an unknown authid
    /// (logged as such, never the authid): an authid from another
    /// deployment, or a shard removed against the rule.
    pub fn grant(&self, authid: AuthId) -> Result<StoredGrant, BrokerError> {
        let Some(db) = open(
            &self.env,
            &self.cfg,
            authid.shard(),
            &self.work,
            self.faults.clone(),
        )?
        else {
            crate::shell::log::warn(
                "unknown_shard",
                serde_json::json!({ "what": "an authid names a shard not in D1_SHARDS" }),
            );
            return Err(BrokerError::UnknownAuthId);
        };
        Ok(StoredGrant::new(db, self.keys.clone(), authid))
    }
}
