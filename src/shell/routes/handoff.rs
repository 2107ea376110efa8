//! Duplicati's old-UI hand-off, end to end (the rules: `crate::handoff`): the
//! index registers the UI's token and binds it to this browser, `/login`
//! carries it (from that browser only) to the callback in a cookie, the
//! callback leaves the new authid sealed but unconfirmed, the user sends it
//! with the result page's button (`POST /handoff`), and the UI collects it
//! once from `GET /fetch` (JSON or JSONP) and learns from `GET /token-state`
//! that it was collected.

use crate::cookie;
use crate::error::BrokerError;
use crate::handoff::{
    self, token_hash, ConfirmError, ConfirmToken, FetchAnswer, FetchStage, HandoffBinding,
    Registration, BINDING_COOKIE, COOKIE_NAME, FETCH_TTL_SECS,
};
use crate::login;
use crate::pages;
use crate::seal::SealError;
use crate::secret::ct_eq;
use crate::shell::call::Call;
use crate::shell::respond::{html, javascript, json_ok, Out};
use crate::storage::Handoffs as _;

/// The browser's binding cookie, if it sent one of the shape we issue.
fn binding(c: &Call) -> Option<HandoffBinding> {
    c.header("Cookie")
        .and_then(|h| cookie::value(&h, BINDING_COOKIE))
        .and_then(|v| HandoffBinding::from_cookie_value(&v))
}

/// The `Set-Cookie` value of a binding. Lax, like the login cookie: it must
/// reach `/login` and the callback (top-level navigations) and the confirming
/// POST (same-site); a cross-site POST or script request never carries it.
fn binding_cookie(b: &HandoffBinding) -> String {
    cookie::set(BINDING_COOKIE, b.secret(), FETCH_TTL_SECS)
}

/// The registration of `token` as stored now, if any.
async fn registration(c: &Call, token: &str) -> Result<Option<Registration>, BrokerError> {
    Ok(c.db()?
        .handoff(&token_hash(token), c.cfg.now)
        .await?
        .map(|(r, _)| r))
}

/// Registers the UI's token for this browser when it opens the index; returns
/// the binding's `Set-Cookie`. A token another browser registered is a 409.
pub async fn register(c: &Call, token: &str) -> Result<String, BrokerError> {
    // The browser's existing binding, if any, rather than a new one per token:
    // every token this browser registered stays usable (two Duplicati tabs).
    // Only this host can have set a `__Host-` cookie, so it cannot be planted.
    let binding = match binding(c) {
        Some(b) => b,
        None => HandoffBinding::generate()?,
    };
    let now = c.cfg.now;
    c.db()?
        .register_handoff(&token_hash(token), &binding, now + FETCH_TTL_SECS, now)
        .await?;
    // Whoever inserted first owns the token; read back who that was.
    handoff::check_registration(registration(c, token).await?.as_ref(), &binding)?;
    Ok(binding_cookie(&binding))
}

/// At `/login?token=<t>`: refuses unless this browser registered `t` and has
/// not sent its authid yet.
pub async fn check_login(c: &Call, token: &str) -> Result<(), BrokerError> {
    handoff::check_login(registration(c, token).await?.as_ref(), binding(c).as_ref())
}

/// The cookie that carries the token from `/login` to the callback.
pub fn carry_cookie(token: &str) -> String {
    cookie::set(COOKIE_NAME, token, login::LOGIN_TTL_SECS)
}

/// At the callback of a login that carried a token (`expected_hash`, from the
/// login record): leave the new authid sealed under the token the browser's
/// carrier cookie holds, if it is that token and the browser is the one that
/// registered it, waiting for the user's confirmation. Returns the
/// confirmation token for the result page's form (`None` if nothing was left)
/// and the cookie that clears the carrier.
pub async fn leave_for_confirmation(
    c: &Call,
    expected_hash: &str,
    authid: &str,
) -> Result<(Option<ConfirmToken>, String), BrokerError> {
    let token = c
        .header("Cookie")
        .and_then(|h| cookie::value(&h, COOKIE_NAME))
        .filter(|t| ct_eq(token_hash(t).as_bytes(), expected_hash.as_bytes()));
    let left = match (token, binding(c)) {
        (Some(token), Some(binding)) => {
            let sealed = c.cfg.keys()?.seal_handoff(&token, authid)?;
            let confirm = ConfirmToken::generate()?;
            c.db()?
                .seal_handoff(expected_hash, &binding, &sealed, &confirm, c.cfg.now)
                .await?
                .then_some(confirm)
        }
        _ => None,
    };
    Ok((left, cookie::set(COOKIE_NAME, "", 0)))
}

/// The result page's prompt for a login that carried a token.
pub fn prompt(left: Option<&ConfirmToken>) -> pages::HandoffPrompt<'_> {
    match left {
        Some(t) => pages::HandoffPrompt::Confirm(t.secret()),
        None => pages::HandoffPrompt::NotSent,
    }
}

/// `POST /handoff` (form field `confirm`): the user sends the authid to the
/// Duplicati window. Needs the page's single-use confirmation token and the
/// binding cookie of the browser that registered the token.
pub async fn confirm(c: &mut Call) -> Out {
    let form = c.form().await?;
    let confirm = handoff::confirm_param(&form)?;
    let presented = binding(c);
    let now = c.cfg.now;
    let db = c.db()?;
    let found = db.handoff_to_confirm(&confirm, now).await?;
    let binding = handoff::check_confirmation(found.as_ref(), presented.as_ref(), now)?;
    // The update repeats every condition: of two clicks exactly one confirms.
    if !db.confirm_handoff(&confirm, binding, now).await? {
        return Err(ConfirmError::Used.into());
    }
    Ok(html(pages::handoff_sent()))
}

/// `GET /fetch?token=<t>[&callback=<fn>]`: the authid a login with `t` made,
/// once the user confirmed it, once.
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
        // A token that could never have been registered names no entry.
        Some(t) if !handoff::strong_token(t) => FetchAnswer::NoSuchEntry,
        Some(t) => collect(c, t).await?,
    };
    let body = answer.json();
    match callback.and_then(|cb| handoff::jsonp(cb, &body)) {
        Some(js) => javascript(js),
        None => json_ok(body),
    }
}

/// Opens and collects the hand-off of `token`: only a confirmed one, and only
/// the caller whose update flips `collected` gets the authid.
async fn collect(c: &Call, token: &str) -> Result<FetchAnswer, BrokerError> {
    let db = c.db()?;
    let hash = token_hash(token);
    let Some((registration, sealed)) = db.handoff(&hash, c.cfg.now).await? else {
        return Ok(FetchAnswer::NoSuchEntry);
    };
    let sealed = match (registration.fetch_stage(), sealed) {
        (FetchStage::Waiting, _) => return Ok(FetchAnswer::NotReady),
        (FetchStage::Ready, Some(sealed)) => sealed,
        (FetchStage::Ready, None) | (FetchStage::Gone, _) => return Ok(FetchAnswer::NoSuchEntry),
    };
    match c.cfg.keys()?.open_handoff(token, &sealed) {
        Ok(authid) if db.collect_handoff(&hash, c.cfg.now).await? => {
            Ok(FetchAnswer::Authid(authid))
        }
        Ok(_) | Err(SealError::Open) => Ok(FetchAnswer::NoSuchEntry),
        Err(e) => Err(e.into()),
    }
}

/// `GET /token-state?token=<t>`: whether `/fetch` has collected it.
pub async fn token_state(c: &mut Call) -> Out {
    let collected = match c.query("token")?.filter(|t| handoff::strong_token(t)) {
        Some(t) => registration(c, t).await?.is_some_and(|r| r.collected),
        None => false,
    };
    json_ok(serde_json::json!({ "success": collected }))
}
