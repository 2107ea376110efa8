//! The token service: the one place that mints, refreshes, redeems and
//! revokes a grant, whichever door asked (Duplicati's `/refresh` and pages,
//! the OAuth 2.0 endpoints, Akeeba's helper and refresh URL, Jottacloud's CLI
//! token). A route file parses its wire shape, calls one function here and
//! shapes the answer; no route calls another. Limits are applied here, so
//! every door is limited alike. The promise each path keeps: docs/storage.md,
//! "Redemption" and "Concurrency".
//!
//! - this file: an access token for an authid ([`for_authid`], [`stored`],
//!   [`pass_through`]);
//! - `mint.rs`: a new grant from a login's code exchange;
//! - `redeem.rs`: authorization and device codes at the token endpoint;
//! - `revoke.rs`: revocation by the holder, or on a replayed code.

mod account;
mod mint;
mod reauthorize;
mod redeem;
mod revoke;

pub use mint::mint;
pub use reauthorize::{reauthorizable, reauthorize, status, StatusAnswer};
pub use redeem::{redeem_code, redeem_device_code};
pub use revoke::{revoke, revoke_authid, Revoker};

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use worker::Delay;

use crate::authid::{next_v2_authid, parse_authid, plausible_refresh_token, AuthId, ParsedAuthId};
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::ProviderId;
use crate::login::sha256_hex;
use crate::memo::Memo;
use crate::migrate::{self, Export, Source};
use crate::providers::{canonical_id, same_provider};
use crate::refresh::{self, Grants, PassThrough, ReadFrom, Runtime};
use crate::secret::{AccessToken, RefreshToken};
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::detach::WaitUntil;
use crate::shell::guard::{count_miss, rate_limit, refuse_if_spent};
use crate::shell::log;
use crate::shell::migration;
use crate::shell::store::vault::StoredGrant;
use crate::shell::upstream_fetch;
use crate::storage::GrantVault as _;
use crate::upstream::Upstream;

/// An access token served for an authid.
pub struct Issued {
    pub token: AccessToken,
    /// Seconds the token really has left.
    pub remaining: i64,
    /// The canonical provider id.
    pub provider: String,
    /// For a pass-through (v2) authid: the authid to present next time (it
    /// changes when the provider rotates the refresh token). `None` for a
    /// stored (v1) authid, which never changes, and for a rotated token too
    /// long to be an authid (the access token still lets this job finish).
    pub next_authid: Option<String>,
}

/// The provider a client is configured for (the token endpoint's `client_id`,
/// RFC 6749 §6; Akeeba's engine), and the door's refusal when the authid
/// names another: a client configured for one provider is never handed
/// another provider's token.
pub struct ForClient<'a> {
    pub provider: &'a str,
    pub refusal: BrokerError,
}

impl ForClient<'_> {
    fn check(client: Option<&Self>, provider: &str) -> Result<(), BrokerError> {
        match client {
            Some(f) if !same_provider(f.provider, provider) => Err(f.refusal.clone()),
            _ => Ok(()),
        }
    }
}

/// Serves an access token for the authid `raw` (v1 or v2), applying the
/// per-grant limit (and, for v2, the per-address pass-through limit). With
/// `client`, the authid must be of the client's provider: a v2 authid names
/// it and is refused before its token is spent; a stored grant's provider is
/// known once it is opened, and refusing then loses nothing (its refresh
/// token, rotated or not, is kept).
pub async fn for_authid(
    c: &Call,
    raw: &str,
    client: Option<ForClient<'_>>,
) -> Result<Issued, BrokerError> {
    // Per-grant limit (cache hits count): keyed by the row's key hash for v1 and
    // by a hash of the provider and refresh token for v2, never by the authid itself.
    match parse_authid(raw)? {
        ParsedAuthId::V2 {
            provider,
            refresh_token,
        } => {
            ForClient::check(client.as_ref(), &provider)?;
            let provider = canonical_id(&provider).to_string();
            let p = pass_through(c, &provider, &refresh_token).await?;
            // Every token round-trips through the next authid (escaped as needed).
            let next_authid = next_v2_authid(&provider, &p.next);
            if next_authid.is_none() {
                log::warn(
                    "v2_next_authid_too_long",
                    serde_json::json!({ "provider": provider }),
                );
            }
            Ok(Issued {
                token: p.access_token,
                remaining: p.expires_in,
                provider,
                next_authid,
            })
        }
        ParsedAuthId::V1(authid) => {
            let issued = stored(c, authid).await?;
            ForClient::check(client.as_ref(), &issued.provider)?;
            Ok(issued)
        }
    }
}

/// A successor for the stored (v1) authid `authid`, which has just been
/// served: a new authid on the same shard that names `authid` and, on its
/// first use, takes over its grant as it is then, while `authid` keeps
/// working until that first use, when it becomes `AuthIdReplaced`
/// (docs/storage.md "Successors"). Akeeba's refresh URL hands one out with
/// every answer, so a URL that reached a log is worthless once the next
/// refresh ran. `None` when the grant is no longer live (revoked or replaced
/// meanwhile): `authid` is answered as it stands.
pub async fn successor(c: &Call, authid: AuthId) -> Result<Option<String>, BrokerError> {
    let shard = authid.shard();
    let vault = c.vault()?;
    let current = vault.grant(authid)?;
    let read = current.open(ReadFrom::Primary).await?;
    let next = AuthId::generate(shard)
        .map_err(|_| BrokerError::internal("no randomness for a successor authid"))?;
    let shown = next.expose();
    let minted = current
        .mint_successor(&read, &vault.grant(next)?, c.cfg.now)
        .await?;
    Ok(minted.then_some(shown))
}

/// The per-grant limit's bucket for a pass-through refresh token: a hash of
/// the provider (canonical) and the token, never the token. One key whichever
/// door presents it (a v2 authid, Akeeba's raw token).
pub(super) fn pass_through_grant_key(provider: &str, refresh_token: &RefreshToken) -> String {
    sha256_hex(&format!("{provider}\n{}", refresh_token.secret()))
}

/// Where an oauth-handler authid this broker does not hold yet can be moved
/// from (`crate::migrate`), with the export request for it: `None` for an
/// authid of ours, or when no move source is configured.
fn move_source(c: &Call, authid: &AuthId) -> Result<Option<(Rc<Source>, Export)>, BrokerError> {
    if !migrate::may_migrate(authid) {
        return Ok(None);
    }
    Ok(c.cfg.migration_source()?.map(|s| {
        let export = s.export(authid);
        (s, export)
    }))
}

/// Whether the grant under `grant`, unknown here, was moved in from the
/// operator's oauth-handler just now (`shell::migration::adopt`).
async fn moved_in(
    c: &Call,
    grant: &StoredGrant,
    source: &Option<(Rc<Source>, Export)>,
) -> Result<bool, BrokerError> {
    match source {
        Some((source, export)) => migration::adopt(c, grant, source, export).await,
        None => Ok(false),
    }
}

/// A stored (v1) grant: the single-flight refresh over the vault. An
/// oauth-handler authid this broker does not hold yet is first moved from the
/// operator's oauth-handler, if one is configured (`crate::migrate`).
pub async fn stored(c: &Call, authid: AuthId) -> Result<Issued, BrokerError> {
    let source = move_source(c, &authid)?;
    let grant = c.vault()?.grant(authid)?;
    rate_limit(c, "RL_PER_GRANT", grant.limit_key()).await?;
    let runtime = WorkerRuntime(c.cfg.clone());
    let detach = WaitUntil(&c.ctx);
    let reauthorize = c.cfg.reauthorize();
    let served = match refresh::single_flight(&grant, &runtime, &detach, &reauthorize).await {
        Err(BrokerError::UnknownAuthId) if moved_in(c, &grant, &source).await? => {
            refresh::single_flight(&grant, &runtime, &detach, &reauthorize).await?
        }
        other => other?,
    };
    Ok(Issued {
        token: served.token,
        remaining: served.remaining,
        provider: served.provider.as_str().to_string(),
        next_authid: None,
    })
}

/// Refreshes a raw provider refresh token (a v2 authid's, Akeeba's raw
/// token) upstream, storing nothing, behind every pass-through limit: the
/// answer carries the token to present next time (the rotated one, or the
/// same).
pub async fn pass_through(
    c: &Call,
    provider: &str,
    refresh_token: &RefreshToken,
) -> Result<PassThrough, BrokerError> {
    // Every new pass-through token is a new grant bucket and a provider call
    // with our client credentials. In order, each before any provider call:
    // obvious garbage is answered here; a token the provider refused lately
    // is answered from memory; the provider's refusal budget (everyone's);
    // the address's budget per /64 and per network (/48, IPv4 /24); then the
    // token's own (cache hits do not exist here: nothing is stored).
    if !plausible_refresh_token(refresh_token) {
        return Err(BrokerError::MalformedAuthId);
    }
    let provider = canonical_id(provider);
    let key = pass_through_grant_key(provider, refresh_token);
    let now = clock::now_ms();
    if let Some(e) = REFUSED.with_borrow_mut(|m| m.recall(&key, now)) {
        return Err(e);
    }
    refuse_if_spent(PASS_THROUGH_REFUSALS, provider)?;
    rate_limit(c, "RL_V2_PER_IP", c.client_key()?).await?;
    rate_limit(c, "RL_V2_PER_48", c.network_key()?).await?;
    rate_limit(c, "RL_PER_GRANT", key.clone()).await?;
    let outcome =
        upstream_fetch::refresh(&c.cfg, provider, refresh_token, c.cfg.upstream_timeout_ms).await;
    let answer = refresh::pass_through(refresh_token, outcome, c.cfg.log_in_again());
    if let Err(e @ BrokerError::ReauthorizationRequired { .. }) = &answer {
        // The provider refused the token (`invalid_grant`): that is final, so
        // it is remembered and never asked again for a while, and it counts
        // against the provider's refusal budget. A refusal is the client's
        // token, not a failure of the broker: nothing is logged.
        REFUSED.with_borrow_mut(|m| m.remember(key, e, now, now + REFUSED_MEMO_MS));
        // The refusal is this answer either way; a budget it spent refuses
        // the next ones.
        let _spent = count_miss(c, PASS_THROUGH_REFUSALS, provider).await;
    }
    answer
}

/// Per provider, pass-through tokens the provider may refuse a minute (a
/// global budget: refused tokens are what a flood of made-up ones looks like,
/// and each refusal is a call with our client credentials). Once spent, this
/// isolate refuses that provider's pass-through refreshes (429) until the
/// window ends; stored (v1) grants are never affected.
const PASS_THROUGH_REFUSALS: &str = "RL_V2_REFUSED";

/// How long a refused pass-through token is answered from memory.
const REFUSED_MEMO_MS: u64 = 10 * 60 * 1000;

thread_local! {
    /// Pass-through tokens the provider refused lately, per isolate, by
    /// [`pass_through_grant_key`] (never the token).
    static REFUSED: RefCell<Memo> = RefCell::new(Memo::new(1024));
}

/// The Workers runtime as the single-flight loop sees it. Owns (shares) the
/// configuration: a refresh it starts may outlive the request.
#[derive(Clone)]
struct WorkerRuntime(Rc<Config>);

impl Runtime for WorkerRuntime {
    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    fn upstream_timeout_ms(&self) -> u64 {
        self.0.upstream_timeout_ms
    }

    async fn sleep(&self, ms: u64) {
        Delay::from(Duration::from_millis(ms)).await;
    }

    async fn refresh_upstream(
        &self,
        provider: &ProviderId,
        refresh_token: &RefreshToken,
    ) -> Result<Upstream, BrokerError> {
        // The broker's patience, not the client's: the provider's answer may
        // carry the only copy of a rotated refresh token.
        let patience = self.0.upstream_patience_ms;
        upstream_fetch::refresh(&self.0, provider.as_str(), refresh_token, patience).await
    }

    fn warn(&self, message: &str) {
        log::warn("refresh_warning", serde_json::json!({ "what": message }));
    }
}
