//! An access token for an authid, whichever client dialect asked for it
//! (Duplicati's `/refresh`, the OAuth 2.0 token endpoint, Akeeba's refresh
//! URL). Each dialect translates its wire shape to [`for_authid`] (or, for a
//! raw provider refresh token, [`pass_through`]) and shapes the answer; none
//! of them owns broker logic. Per-grant and pass-through limits are applied
//! here, so every door is limited alike.

use std::rc::Rc;
use std::time::Duration;

use worker::Delay;

use crate::authid::{next_v2_authid, parse_authid, plausible_refresh_token, AuthId, ParsedAuthId};
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::ProviderId;
use crate::login::sha256_hex;
use crate::migrate;
use crate::providers::canonical_id;
use crate::refresh::{self, PassThrough, Runtime};
use crate::secret::{AccessToken, RefreshToken};
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::detach::WaitUntil;
use crate::shell::guard::rate_limit;
use crate::shell::migration;
use crate::shell::upstream_fetch;
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

/// Serves an access token for the authid `raw` (v1 or v2), applying the
/// per-grant limit (and, for v2, the per-address pass-through limit).
pub async fn for_authid(c: &Call, raw: &str) -> Result<Issued, BrokerError> {
    // Per-grant limit (cache hits count): keyed by the row's key hash for v1 and
    // by a hash of the provider and refresh token for v2, never by the authid itself.
    match parse_authid(raw)? {
        ParsedAuthId::V2 {
            provider,
            refresh_token,
        } => {
            // Every new v2 authid is a new grant bucket and a provider call with
            // our client credentials: obvious garbage is answered here, and the
            // rest spends the address's own pass-through budget first.
            if !plausible_refresh_token(&refresh_token) {
                return Err(BrokerError::MalformedAuthId);
            }
            rate_limit(c, "RL_V2_PER_IP", c.client_key()?).await?;
            rate_limit(c, "RL_PER_GRANT", v2_grant_key(&provider, &refresh_token)).await?;
            let provider = canonical_id(&provider).to_string();
            let p = pass_through(c, &provider, &refresh_token).await?;
            // Every token round-trips through the next authid (escaped as needed).
            let next_authid = next_v2_authid(&provider, &p.next);
            if next_authid.is_none() {
                worker::console_warn!("v2 refresh: the rotated token is too long for an authid");
            }
            Ok(Issued {
                token: p.access_token,
                remaining: p.expires_in,
                provider,
                next_authid,
            })
        }
        ParsedAuthId::V1(authid) => stored(c, authid).await,
    }
}

/// The per-grant limit's bucket for a pass-through (v2) authid: a hash of what
/// it names (the provider as spelled and the refresh token), never the token.
fn v2_grant_key(provider: &str, refresh_token: &RefreshToken) -> String {
    sha256_hex(&format!("{provider}\n{}", refresh_token.secret()))
}

/// A stored (v1) grant: the single-flight refresh over the vault. An
/// oauth-handler authid this broker does not hold yet is first moved from the
/// operator's oauth-handler, if one is configured (`crate::migrate`).
pub async fn stored(c: &Call, authid: AuthId) -> Result<Issued, BrokerError> {
    let source = if migrate::may_migrate(&authid) {
        c.cfg.migration_source()?
    } else {
        None
    };
    let export = source.as_ref().map(|s| s.export(&authid));
    let grant = c.vault()?.grant(authid)?;
    rate_limit(c, "RL_PER_GRANT", grant.limit_key()).await?;
    let runtime = WorkerRuntime(c.cfg.clone());
    let detach = WaitUntil(&c.ctx);
    let reauthorize = c.cfg.reauthorize();
    let served = match refresh::single_flight(&grant, &runtime, &detach, &reauthorize).await {
        Err(BrokerError::UnknownAuthId) => match (&source, &export) {
            (Some(source), Some(export)) if migration::adopt(c, &grant, source, export).await? => {
                refresh::single_flight(&grant, &runtime, &detach, &reauthorize).await?
            }
            _ => return Err(BrokerError::UnknownAuthId),
        },
        other => other?,
    };
    Ok(Issued {
        token: served.token,
        remaining: served.remaining,
        provider: served.provider.as_str().to_string(),
        next_authid: None,
    })
}

/// Refreshes a raw provider refresh token upstream, storing nothing: the
/// answer carries the token to present next time (the rotated one, or the
/// same). The caller applies its own limits first.
pub async fn pass_through(
    c: &Call,
    provider: &str,
    refresh_token: &RefreshToken,
) -> Result<PassThrough, BrokerError> {
    let provider = canonical_id(provider);
    let outcome =
        upstream_fetch::refresh(&c.cfg, provider, refresh_token, c.cfg.upstream_timeout_ms).await;
    refresh::pass_through(refresh_token, outcome, c.cfg.reauthorize())
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
        worker::console_warn!("{message}");
    }
}
