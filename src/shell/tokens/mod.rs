//! The token service: the one place that mints, refreshes, redeems and
//! revokes a grant, whichever door asked (Duplicati's `/refresh` and pages,
//! the OAuth 2.0 endpoints, Akeeba's helper and refresh URL, Jottacloud's CLI
//! token). A route file parses its wire shape, calls one function here and
//! shapes the answer; no route calls another. Limits are applied here, so
//! every door is limited alike. The promise each path keeps: docs/storage.md,
//! "Redemption" and "Concurrency".
//!
//! - this file: an access token for an authid ([`for_authid`], [`stored`]);
//! - `pass_through.rs`: a raw provider refresh token, storing nothing;
//! - `mint.rs`: a new grant from a login's code exchange;
//! - `redeem.rs`: authorization and device codes at the token endpoint;
//! - `revoke.rs`: revocation by the holder, or on a replayed code.

mod account;
mod mint;
mod pass_through;
mod reauthorize;
mod redeem;
mod revoke;

pub use mint::mint;
pub use pass_through::pass_through;
pub use reauthorize::{reauthorizable, reauthorize, status, StatusAnswer};
pub use redeem::{redeem_code, redeem_device_code};
pub use revoke::revoke_authid;

use std::rc::Rc;
use std::time::Duration;

use worker::Delay;

use crate::authid::{next_v2_authid, parse_authid, AuthId, ParsedAuthId};
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::ProviderId;
use crate::providers::{canonical_id, same_provider};
use crate::refresh::{self, Grants, ReadFrom, Runtime};
use crate::secret::{AccessToken, RefreshToken};
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::detach::WaitUntil;
use crate::shell::guard::rate_limit;
use crate::shell::handler_move;
use crate::shell::log;
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

/// A stored (v1) grant: the single-flight refresh over the vault. An
/// oauth-handler authid this broker does not hold yet is first moved from the
/// operator's oauth-handler, if one is configured (`crate::handler_move`).
pub async fn stored(c: &Call, authid: AuthId) -> Result<Issued, BrokerError> {
    let source = handler_move::source(c, &authid)?;
    let grant = c.vault()?.grant(authid)?;
    rate_limit(c, "RL_PER_GRANT", grant.limit_key()).await?;
    let runtime = WorkerRuntime(c.cfg.clone());
    let detach = WaitUntil(&c.ctx);
    let reauthorize = c.cfg.reauthorize();
    let served = match refresh::single_flight(&grant, &runtime, &detach, &reauthorize).await {
        Err(BrokerError::UnknownAuthId) if handler_move::moved_in(c, &grant, &source).await? => {
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
