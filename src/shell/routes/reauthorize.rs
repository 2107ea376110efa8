//! `GET /reauthorize` (a form) and `POST /reauthorize` (the authid, or the
//! status page's ticket): re-authorization into the same authid
//! (`crate::reauthorize`). The grant is opened and checked first; then a
//! login starts whose ending writes the new grant into the same authid, and
//! the page links on to the provider. The login's ending is
//! [`LoginEnding::Reauthorize`], finished by the callback ([`finish`]).

use worker::Method;

use crate::authid::{parse_authid, ParsedAuthId};
use crate::cookie;
use crate::error::BrokerError;
use crate::login::{self, LoginEnding};
use crate::providers::Provider;
use crate::reauthorize::{self, Refusal, Ticket};
use crate::request::{single, Params};
use crate::seal::{Pending, SealError, Sealed};
use crate::secret::StateToken;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::tokens;
use crate::storage::Logins as _;
use crate::upstream::TokenResponse;

pub async fn page(c: &mut Call) -> Out {
    if c.req.method() != Method::Post {
        return Ok(html(reauthorize::form_page()));
    }
    let form = c.form().await?;
    let raw = authid_or_ticket(c, &form)?;
    let authid = match parse_authid(raw.trim())? {
        ParsedAuthId::V1(a) => a,
        ParsedAuthId::V2 { .. } => return Err(Refusal::PassThrough.into()),
    };
    let provider = tokens::reauthorizable(c, authid).await?;
    let now = c.cfg.now;
    let placeholder = Sealed {
        key_version: 0,
        nonce: String::new(),
        ciphertext: String::new(),
    };
    let mut started = login::start(
        provider,
        &c.cfg.origin,
        1,
        None,
        LoginEnding::Reauthorize {
            authid: placeholder,
        },
        now,
    )?;
    // The authid comes back to the callback sealed under this login's
    // browser-binding cookie (stored only hashed): the row alone does not
    // reveal it.
    started.record.ending = LoginEnding::Reauthorize {
        authid: c.cfg.keys()?.seal_pending(
            Pending::ReauthorizeAuthId,
            started.binding.secret(),
            raw.trim().as_bytes(),
        )?,
    };
    c.db()?
        .insert_login(&started.state, &started.record, now)
        .await?;
    Ok(html(reauthorize::continue_page(
        &provider.name,
        &started.authorize_url,
    ))
    .with_cookie(login::set_cookie(&started.binding)))
}

/// The authid a form names: its `authid` field, or the status page's
/// `ticket` opened with this browser's cookie (`crate::reauthorize::Ticket`).
pub(super) fn authid_or_ticket(c: &Call, form: &Params) -> Result<String, BrokerError> {
    if let Some(ticket) = single(form, "ticket")?.filter(|t| !t.is_empty()) {
        let cookie = c
            .header("Cookie")
            .and_then(|h| cookie::value(&h, Ticket::COOKIE));
        return Ticket::open(c.cfg.keys()?, cookie.as_deref(), ticket, c.cfg.now);
    }
    single(form, "authid")?
        .filter(|a| !a.trim().is_empty())
        .map(str::to_string)
        .ok_or(BrokerError::MissingAuthId)
}

/// The callback's arm for [`LoginEnding::Reauthorize`]: the sealed authid,
/// opened with the login's cookie, gets the new login's grant if it is the
/// same account.
pub(super) async fn finish(
    c: &Call,
    sealed: &Sealed,
    binding: &StateToken,
    provider: &Provider,
    resp: TokenResponse,
) -> Out {
    let plain = c
        .cfg
        .keys()?
        .open_pending(Pending::ReauthorizeAuthId, binding.secret(), sealed)?;
    let raw = String::from_utf8(plain).map_err(|_| SealError::Open)?;
    let ParsedAuthId::V1(authid) = parse_authid(&raw)? else {
        return Err(Refusal::PassThrough.into());
    };
    tokens::reauthorize(c, authid, provider, resp).await?;
    Ok(html(reauthorize::done_page(&provider.name)).with_cookie(login::clear_cookie()))
}
