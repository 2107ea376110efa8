//! Duplicati's old-UI hand-off, end to end (the wire rules: `crate::handoff`):
//! the index registers the UI's token, `/login` carries it to the callback in
//! a cookie, the callback leaves the new authid sealed under it, and the UI
//! collects it once from `GET /fetch` (JSON or JSONP) and learns from
//! `GET /token-state` that it was collected.

use crate::error::BrokerError;
use crate::handoff::{self, token_hash, FetchAnswer, COOKIE_NAME, FETCH_TTL_SECS};
use crate::login;
use crate::seal::SealError;
use crate::secret::ct_eq;
use crate::shell::call::Call;
use crate::shell::respond::{javascript, json_ok, Out};
use crate::shell::store::handoffs::Handoff;

/// Registers the UI's token when it opens the index.
pub async fn register(c: &Call, token: &str) -> Result<(), BrokerError> {
    let now = c.cfg.now;
    c.db()?
        .register_handoff(&token_hash(token), now + FETCH_TTL_SECS, now)
        .await
}

/// The cookie that carries the token from `/login` to the callback.
pub fn carry_cookie(token: &str) -> String {
    login::cookie(COOKIE_NAME, token, login::LOGIN_TTL_SECS)
}

/// At the callback of a login that carried a token (`expected_hash`, from the
/// login record): leave the new authid for `/fetch`, sealed under the token
/// the browser's cookie holds if it is that token. Returns the cookie that
/// clears the carrier.
pub async fn leave_for_fetch(
    c: &Call,
    expected_hash: &str,
    authid: &str,
) -> Result<String, BrokerError> {
    let token = c
        .header("Cookie")
        .and_then(|h| login::cookie_value(&h, COOKIE_NAME))
        .filter(|t| ct_eq(token_hash(t).as_bytes(), expected_hash.as_bytes()));
    if let Some(token) = token {
        let sealed = c.cfg.keys()?.seal_handoff(&token, authid)?;
        c.db()?
            .complete_handoff(expected_hash, &sealed, c.cfg.now + FETCH_TTL_SECS)
            .await?;
    }
    Ok(login::cookie(COOKIE_NAME, "", 0))
}

/// `GET /fetch?token=<t>[&callback=<fn>]`: the authid a login with `t` made, once.
pub async fn fetch(c: &mut Call) -> Out {
    let callback = c.query("callback")?.filter(|cb| !cb.is_empty());
    if callback.is_some_and(|cb| !handoff::valid_callback(cb)) {
        return Err(BrokerError::BadRequest {
            code: "bad_callback",
            what: "callback must be a JavaScript identifier",
        });
    }
    let answer = match c.query("token")?.filter(|t| !t.is_empty()) {
        None => FetchAnswer::MissingToken,
        Some(t) if !handoff::valid_token(t) => FetchAnswer::NoSuchEntry,
        Some(t) => collect(c, t).await?,
    };
    let body = answer.json();
    match callback.and_then(|cb| handoff::jsonp(cb, &body)) {
        Some(js) => javascript(js),
        None => json_ok(body),
    }
}

/// Opens and collects the hand-off of `token`: only the caller whose update
/// flips `collected` gets the authid.
async fn collect(c: &Call, token: &str) -> Result<FetchAnswer, BrokerError> {
    let db = c.db()?;
    let hash = token_hash(token);
    let sealed = match db.handoff(&hash, c.cfg.now).await? {
        None | Some(Handoff::Collected) => return Ok(FetchAnswer::NoSuchEntry),
        Some(Handoff::Pending) => return Ok(FetchAnswer::NotReady),
        Some(Handoff::Ready(sealed)) => sealed,
    };
    match c.cfg.keys()?.open_handoff(token, &sealed) {
        Ok(authid) if db.collect_handoff(&hash).await? => Ok(FetchAnswer::Authid(authid)),
        Ok(_) | Err(SealError::Open) => Ok(FetchAnswer::NoSuchEntry),
        Err(e) => Err(e.into()),
    }
}

/// `GET /token-state?token=<t>`: whether `/fetch` has collected it.
pub async fn token_state(c: &mut Call) -> Out {
    let collected = match c.query("token")?.filter(|t| handoff::valid_token(t)) {
        Some(t) => matches!(
            c.db()?.handoff(&token_hash(t), c.cfg.now).await?,
            Some(Handoff::Collected)
        ),
        None => false,
    };
    json_ok(serde_json::json!({ "success": collected }))
}
