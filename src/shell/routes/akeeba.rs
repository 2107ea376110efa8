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
use crate::login::{self, LoginEnding};
use crate::providers::Provider;
use crate::shell::call::Call;
use crate::shell::respond::{html, json_ok, redirect, Out};
use crate::shell::tokens::{self, ForClient};
use crate::storage::Logins as _;

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
            let client = ForClient {
                provider: engine.provider,
                refusal: akeeba::ENGINE_MISMATCH,
            };
            let issued = tokens::for_authid(c, &raw, Some(client)).await?;
            let next = match parse_authid(&raw)? {
                // A v2 authid moves on with its token.
                ParsedAuthId::V2 { .. } => issued.next_authid.clone(),
                // A stored one is handed on to a successor, so the URL that
                // carried this one (Akeeba puts it in the query) is worthless
                // once the next refresh ran. Should that fail, the answer
                // still stands with the same authid, which keeps working.
                ParsedAuthId::V1(authid) => match tokens::successor(c, authid).await {
                    Ok(next) => Some(next.unwrap_or(raw)),
                    Err(e) => {
                        if let Some(cause) = e.cause() {
                            crate::shell::log::warn(
                                "akeeba_no_successor",
                                serde_json::json!({ "cause": cause }),
                            );
                        }
                        Some(raw)
                    }
                },
            };
            json_ok(akeeba::answer(
                issued.token.secret(),
                next.as_deref(),
                issued.remaining,
            ))
        }
        Presented::Raw(rt) => {
            // Behind the same limits as a v2 authid (`tokens::pass_through`).
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
