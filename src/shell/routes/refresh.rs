//! `GET|POST /refresh`: an access token for an authid (Duplicati's token call).
//! A stored (v1) grant goes through `crate::refresh::single_flight`, which
//! holds every decision of the protocol; this file gives it the runtime (clock,
//! sleep, the provider, the log). A pass-through (v2) authid is refreshed
//! upstream on every call.

use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use worker::{Delay, Method};

use crate::authid::{next_v2_authid, parse_authid, plausible_refresh_token, AuthId, ParsedAuthId};
use crate::config::Config;
use crate::error::BrokerError;
use crate::ids::ProviderId;
use crate::login::sha256_hex;
use crate::providers::canonical_id;
use crate::refresh::{self, Runtime};
use crate::request::{authid_from, Params};
use crate::secret::RefreshToken;
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::detach::WaitUntil;
use crate::shell::guard::rate_limit;
use crate::shell::respond::{json_ok, redirect, Out};
use crate::shell::upstream_fetch;
use crate::upstream::Upstream;

pub async fn handle(c: &mut Call) -> Out {
    let form = match c.req.method() {
        Method::Post => c.form().await?,
        _ => Params::new(),
    };
    let header = c.header("X-AuthID");
    let Some(raw) = authid_from(header.as_deref(), &form, &c.query)? else {
        return login_redirect(c);
    };
    // Per-grant limit (cache hits count): keyed by the row's key hash for v1 and
    // by a hash of the whole authid for v2, never by the authid itself.
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
            rate_limit(c, "RL_PER_GRANT", sha256_hex(raw)).await?;
            pass_through(c, &provider, &refresh_token).await
        }
        ParsedAuthId::V1(authid) => stored(c, authid).await,
    }
}

/// A stored (v1) grant: the single-flight refresh over the vault.
async fn stored(c: &Call, authid: AuthId) -> Out {
    let grant = c.vault()?.grant(authid);
    rate_limit(c, "RL_PER_GRANT", grant.limit_key()).await?;
    let runtime = WorkerRuntime(c.cfg.clone());
    let served =
        refresh::single_flight(&grant, &runtime, &WaitUntil(&c.ctx), &c.cfg.reauthorize()).await?;
    json_ok(json!({
        "access_token": served.token.secret(),
        "expires": served.remaining,
        "type": served.provider.as_str(),
    }))
}

/// No authid: Duplicati's new UI opens `<oauth-url>?type=<id>` to log in. The
/// access key goes along as it came (`key=`, or the `/k/<key>` prefix).
fn login_redirect(c: &Call) -> Out {
    let Some(t) = c.query("type")? else {
        return Err(BrokerError::MissingAuthId);
    };
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("type", t);
    if let Some(k) = c.query("key")? {
        q.append_pair("key", k);
    }
    Ok(redirect(&format!(
        "{}{}/?{}",
        c.cfg.origin,
        c.base,
        q.finish()
    )))
}

/// A v2 authid carries its refresh token: nothing is stored, and the answer
/// carries the authid to use next time (`v2_authid`).
async fn pass_through(c: &Call, provider: &str, refresh_token: &RefreshToken) -> Out {
    let provider = canonical_id(provider);
    let outcome =
        upstream_fetch::refresh(&c.cfg, provider, refresh_token, c.cfg.upstream_timeout_ms).await;
    let p = refresh::pass_through(refresh_token, outcome, c.cfg.reauthorize())?;
    let mut answer = json!({
        "access_token": p.access_token.secret(),
        "expires": p.expires_in,
        "type": provider,
    });
    // Every token round-trips through `v2_authid` (escaped as needed). One too
    // long to present again (over 8 KiB written) cannot: the access token still
    // lets this job finish; the next refresh asks the user to log in again.
    match next_v2_authid(provider, &p.next) {
        Some(next) => answer["v2_authid"] = next.into(),
        None => worker::console_warn!("v2 refresh: the rotated token is too long for an authid"),
    }
    json_ok(answer)
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
