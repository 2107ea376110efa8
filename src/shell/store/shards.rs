//! The request's D1 databases, one per shard (`D1_SHARDS`, `crate::config`),
//! and the vault, which sends an authid to its own shard's `grants`.
//!
//! A database is opened on first use and kept for the rest of the request,
//! each with its own replica session (`super::Db`); all of them count into the
//! request's one [`D1Work`], so `Server-Timing` sums every shard touched.
//! A stored authid names its shard (`crate::authid`): no directory is read.

use std::cell::RefCell;
use std::rc::Rc;

use worker::Env;

use super::vault::StoredGrant;
use super::{D1Work, Db};
use crate::authid::AuthId;
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::Shard;
use crate::seal::ServerKeys;

/// The shards' databases as this request has opened them.
pub struct Shards {
    env: Env,
    cfg: Rc<Config>,
    work: Rc<D1Work>,
    opened: RefCell<Vec<(Shard, Db)>>,
}

impl Shards {
    pub fn new(env: Env, cfg: Rc<Config>, work: Rc<D1Work>) -> Shards {
        Shards {
            env,
            cfg,
            work,
            opened: RefCell::default(),
        }
    }

    /// The database of `shard`, or `None` when `D1_SHARDS` has no such shard.
    pub fn get(&self, shard: Shard) -> Result<Option<Db>, BrokerError> {
        if let Some((_, db)) = self.opened.borrow().iter().find(|(s, _)| *s == shard) {
            return Ok(Some(db.clone()));
        }
        let Some(binding) = self.cfg.shard_binding(shard)? else {
            return Ok(None);
        };
        let db = Db::open(&self.env, binding, self.work.clone())?;
        self.opened.borrow_mut().push((shard, db.clone()));
        Ok(Some(db))
    }

    /// Shard 1: every table whose lookups carry no authid (logins, hand-offs,
    /// authorization and device codes) and every grant minted before sharding.
    pub fn first(&self) -> Result<Db, BrokerError> {
        // `D1_SHARDS` always has a first entry (`crate::config::parse_shards`).
        self.get(Shard::FIRST)?.ok_or(BrokerError::Misconfigured {
            what: "D1_SHARDS lists no database",
        })
    }
}

/// The grants of every shard, opened with the server keys.
pub struct Vault {
    shards: Rc<Shards>,
    keys: Rc<ServerKeys>,
}

impl Vault {
    pub fn new(shards: Rc<Shards>, keys: Rc<ServerKeys>) -> Vault {
        Vault { shards, keys }
    }

    /// The grant stored (or to be stored) under `authid`, on the shard it
    /// names. A shard the configuration lacks answers like an unknown authid
    /// (logged with the shard's number only, never the authid): an authid
    /// from another deployment, or a shard removed against the rule.
    pub fn grant(&self, authid: AuthId) -> Result<StoredGrant, BrokerError> {
        let Some(db) = self.shards.get(authid.shard())? else {
            worker::console_warn!(
                "an authid names shard {}, which D1_SHARDS does not list",
                authid.shard().number()
            );
            return Err(BrokerError::UnknownAuthId);
        };
        Ok(StoredGrant::new(db, self.keys.clone(), authid))
    }
}
