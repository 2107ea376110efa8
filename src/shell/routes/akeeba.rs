//! Akeeba Backup's "Custom" OAuth2 helper (`crate::akeeba`):
//! - `GET /akeeba/<engine>`, the Helper URL: our normal login, ending on the
//!   helper's page (`LoginEnding::Akeeba`, rendered by `callback.rs` with
//!   [`result_page`]).
//! - `GET /akeeba/<engine>/refresh?refresh_token=…`, the Refresh URL (also
//!   Box's doubled request target): an access token for our authid, or for a
//!   raw provider refresh token, pass-through. The `Authorization: Bearer`
//!   header Akeeba sends (its old access token) is never read.
//!
//! The access gate takes the key from the URL (`/k/<key>/akeeba/…` or
//! `?key=`), as Akeeba's profile has no header field.

use crate::akeeba::{self, Presented, Urls};
use crate::authid::{parse_authid, ParsedAuthId};
use crate::error::BrokerError;
use crate::login::{self, LoginEnding};
use crate::providers::Provider;
use crate::shell::call::Call;
use crate::shell::guard::rate_limit;
use crate::shell::respond::{html, json_ok, redirect, Out};
use crate::shell::tokens;

/// `GET /akeeba/<engine>`: starts the login at the engine's provider.
pub async fn helper(c: &mut Call) -> Out {
    let engine = akeeba::engine(&c.rest).ok_or(akeeba::UNKNOWN_ENGINE)?;
    let (provider, _) = c.cfg.provider(engine.provider)?;
    let now = c.cfg.now;
    // Always a stored (v1) grant: the provider's refresh token stays sealed
    // here and its rotation is the single-flight refresh's business.
    let started = login::start(
        provider,
        &c.cfg.origin,
        1,
        None,
        LoginEnding::Akeeba {
            engine: engine.slug.to_string(),
        },
        now,
    )?;
    c.db()?
        .insert_login(&started.state, &started.record, now)
        .await?;
    Ok(redirect(&started.authorize_url).with_cookie(login::set_cookie(&started.binding)))
}

/// `GET /akeeba/<engine>/refresh?refresh_token=…`.
pub async fn refresh(c: &mut Call) -> Out {
    let engine = akeeba::refresh_engine(&c.rest)?;
    match akeeba::classify(c.query("refresh_token")?)? {
        Presented::AuthId(raw) => {
            let raw = raw.to_string();
            // A v2 authid names its provider: checked before its token is spent.
            if let Ok(ParsedAuthId::V2 { provider, .. }) = parse_authid(&raw) {
                akeeba::same_provider(engine, &provider)?;
            }
            let issued = tokens::for_authid(c, &raw).await?;
            // A stored grant's provider is known once it is opened; refusing
            // now loses nothing (its refresh token, rotated or not, is kept).
            akeeba::same_provider(engine, &issued.provider)?;
            // A v1 authid stays the same; a v2 one moves on with its token.
            let next = if raw.starts_with("v2:") {
                issued.next_authid.clone()
            } else {
                Some(raw)
            };
            json_ok(akeeba::answer(
                issued.token.secret(),
                next.as_deref(),
                issued.remaining,
            ))
        }
        Presented::Raw(rt) => {
            // The limits a v2 authid meets in `tokens::for_authid`: obvious
            // garbage is refused before a provider call, then the address's
            // pass-through budget and the token's own.
            if !crate::authid::plausible_refresh_token(&rt) {
                return Err(BrokerError::MalformedAuthId);
            }
            rate_limit(c, "RL_V2_PER_IP", c.client_key()?).await?;
            rate_limit(c, "RL_PER_GRANT", login::sha256_hex(rt.secret())).await?;
            let p = tokens::pass_through(c, engine.provider, &rt).await?;
            json_ok(akeeba::answer(
                p.access_token.secret(),
                Some(p.next.secret()),
                p.expires_in,
            ))
        }
    }
}

/// The login's ending: the helper page with the access token and the authid.
pub fn result_page(
    c: &Call,
    engine: &str,
    provider: &Provider,
    access_token: &str,
    shown: &str,
) -> Out {
    let engine = akeeba::engine(engine).ok_or(akeeba::UNKNOWN_ENGINE)?;
    let urls = Urls {
        origin: &c.cfg.origin,
        gated: !c.cfg.gate_allows(None),
    };
    let page = akeeba::result_page(engine, &provider.name, access_token, shown, urls);
    Ok(html(page).with_cookie(login::clear_cookie()))
}
