//! The shell half of `crate::handler_move`: asks the operator's oauth-handler for
//! a grant this broker does not hold yet, and keeps it under the same authid:
//! on shard 1, since oauth-handler spellings are never shard-tagged. Each
//! export call spends the client's `RL_MOVE_PER_IP` budget; an authid the old
//! service did not know is answered "unknown" from this isolate's memory for
//! `handler_move::UNKNOWN_MEMO_MS`, with no call.

use std::cell::RefCell;
use std::rc::Rc;

use crate::authid::AuthId;
use crate::error::BrokerError;
use crate::handler_move::{self, Export, Exported, Source};
use crate::ids::ProviderId;
use crate::memo::Memo;
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::guard::rate_limit;
use crate::shell::store::vault::StoredGrant;
use crate::shell::upstream_fetch::{self, Answer};
use crate::storage::GrantStore as _;
use crate::upstream::MAX_TOKEN_RESPONSE_BYTES;

/// Per-IP budget of export calls: any caller can make up authids in
/// oauth-handler's spelling, and each is a call with the operator's API key.
const MOVE_LIMIT: &str = "RL_MOVE_PER_IP";

thread_local! {
    /// Authids (hashed: `Export::unknown_key`) the old service answered
    /// "unknown" for, lately, in this isolate.
    static UNKNOWN: RefCell<Memo> = RefCell::new(Memo::new(handler_move::UNKNOWN_MEMO_CAP));
}

/// A move that may be made: where the grant would come from, and the export
/// request for it.
pub struct Move {
    source: Rc<Source>,
    export: Export,
}

/// Where an oauth-handler authid this broker does not hold yet can be moved
/// from: `None` for an authid of ours, or when no move source is configured.
pub fn source(c: &Call, authid: &AuthId) -> Result<Option<Move>, BrokerError> {
    if !handler_move::may_move(authid) {
        return Ok(None);
    }
    Ok(c.cfg.handler_move_source()?.map(|source| {
        let export = source.export(authid);
        Move { source, export }
    }))
}

/// Whether the grant under `grant`, unknown here, was moved in from the
/// operator's oauth-handler just now ([`adopt`]).
pub async fn moved_in(
    c: &Call,
    grant: &StoredGrant,
    source: &Option<Move>,
) -> Result<bool, BrokerError> {
    match source {
        Some(m) => adopt(c, grant, &m.source, &m.export).await,
        None => Ok(false),
    }
}

/// Moves the grant `export` names (see [`Source::export`]) from the old
/// service into `grant`'s row. `Ok(true)` when a grant is now stored under
/// this authid (moved by this call or a concurrent one), `Ok(false)` when the
/// old service does not know it either (now, or a moment ago). A row already
/// stored under the keyid is never replaced: then the presented secret is
/// simply wrong. 429 when the client's move budget is spent.
pub async fn adopt(
    c: &Call,
    grant: &StoredGrant,
    source: &Source,
    export: &Export,
) -> Result<bool, BrokerError> {
    let known_unknown =
        UNKNOWN.with_borrow_mut(|m| m.recall(&export.unknown_key, clock::now_ms()).is_some());
    if known_unknown || grant.known().await? {
        return Ok(false);
    }
    rate_limit(c, MOVE_LIMIT, c.client_key()?).await?;
    let Answer { status, body } = upstream_fetch::get(
        &source.export_url,
        &export.headers,
        c.cfg.upstream_timeout_ms,
    )
    .await?;
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(BrokerError::ProviderFailed);
    }
    let (service, moved) = match handler_move::read_export(status, &body)? {
        Exported::Unknown => {
            let now = clock::now_ms();
            UNKNOWN.with_borrow_mut(|m| {
                m.remember(
                    export.unknown_key.clone(),
                    &BrokerError::UnknownAuthId,
                    now,
                    now + handler_move::UNKNOWN_MEMO_MS,
                )
            });
            return Ok(false);
        }
        Exported::Grant { service, grant } => (service, grant),
    };
    let provider = c
        .cfg
        .catalogue()?
        .get(&service)
        .map(|p| ProviderId::new(&p.id))
        .ok_or(BrokerError::Misconfigured {
            what: "a grant in the oauth-handler names a provider this broker does not serve",
        })?;
    let stored = grant.insert_if_absent(&provider, &moved, c.cfg.now).await?;
    if stored {
        // Non-secret: which provider, never the authid or a token.
        crate::shell::log::info(
            "grant_moved_in",
            serde_json::json!({ "from": "oauth-handler", "provider": provider.as_str() }),
        );
    }
    Ok(true)
}
