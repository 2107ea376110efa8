//! `GET /oauth/authorize`: the OAuth 2.0 authorization endpoint for native
//! apps (RFC 6749 §4.1, RFC 8252), the end of its login (a redirect to the
//! client with a one-time code, called from `callback.rs`). Its codes are
//! redeemed by the token service (`tokens::redeem_code`). Every decision is
//! `crate::authorize`'s.

use crate::authorize::{self, CodeRecord, Refusal, CODE_TTL_SECS};
use crate::error::BrokerError;
use crate::login::{self, LoginEnding};
use crate::oauth2;
use crate::redeem::Issuance;
use crate::seal::{Pending, SealError, Sealed};
use crate::secret::StateToken;
use crate::shell::call::Call;
use crate::shell::respond::{redirect, Out};
use crate::storage::{Codes as _, Logins as _};

/// A 302 back to a validated redirect URI with an RFC 6749 §4.1.2.1 error
/// and the `issuer` (RFC 9207).
fn error_back(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
    issuer: &str,
) -> Out {
    let to = authorize::error_redirect(redirect_uri, error, description, state, issuer).ok_or(
        BrokerError::BadRequest {
            code: "invalid_redirect_uri",
            what: "the redirect_uri is not a URI",
        },
    )?;
    Ok(redirect(&to).with_cookie(login::clear_cookie()))
}

pub async fn get(c: &mut Call) -> Out {
    // The issuer the client discovered: the metadata at the same base names it.
    let issuer = oauth2::issuer(&c.cfg.origin, &c.base);
    let req = match authorize::parse_request(&c.query, &c.cfg.redirect_uris()) {
        Ok(r) => r,
        // An invalid client or redirect URI: a page, never a redirect.
        Err(Refusal::Page { code, what }) => return Err(BrokerError::BadRequest { code, what }),
        Err(Refusal::Redirect {
            redirect_uri,
            state,
            error,
            description,
        }) => return error_back(&redirect_uri, error, description, state.as_deref(), &issuer),
    };
    // An unknown client_id is also a page (404 unknown_provider).
    let (provider, _) = c.cfg.provider(&req.client_id)?;
    if !provider.browser_login_with_refresh_token() {
        // Jottacloud (no authorize endpoint) and pCloud (no refresh token, so
        // no authid to hand out as a refresh token) cannot take this door.
        return error_back(
            &req.redirect_uri,
            "unauthorized_client",
            "this provider cannot be used with the authorization code grant",
            req.state.as_deref(),
            &issuer,
        );
    }
    let now = c.cfg.now;
    // The state and the gate prefix are sealed under the login's binding
    // cookie, which `start` draws: the ending is completed once it exists.
    let ending = LoginEnding::Authorize {
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        state: None,
        gate_base: None,
    };
    let mut started = login::start(provider, &c.cfg.origin, 1, None, ending, now)?;
    // The client's state must come back verbatim, so it is kept, but sealed
    // under this login's browser-binding cookie (stored only hashed): the
    // login row alone does not reveal it.
    if let (Some(s), LoginEnding::Authorize { state, .. }) =
        (&req.state, &mut started.record.ending)
    {
        *state = Some(c.cfg.keys()?.seal_pending(
            Pending::ClientState,
            started.binding.secret(),
            s.as_bytes(),
        )?);
    }
    // The callback is reached without the `/k/<key>` prefix, so the prefix
    // is kept to name the issuer there; it holds a key, so sealed like state.
    if let (false, LoginEnding::Authorize { gate_base, .. }) =
        (c.base.is_empty(), &mut started.record.ending)
    {
        *gate_base = Some(c.cfg.keys()?.seal_pending(
            Pending::GateBase,
            started.binding.secret(),
            c.base.as_bytes(),
        )?);
    }
    c.db()?
        .insert_login(&started.state, &started.record, now)
        .await?;
    Ok(redirect(&started.authorize_url).with_cookie(login::set_cookie(&started.binding)))
}

/// The callback's arm for [`LoginEnding::Authorize`]: `outcome` is the authid
/// the login made, or why it failed. A failure goes back to the client as
/// `error=` (§4.1.2.1); a success stores a one-time code and sends it. Both
/// name the issuer the authorization request was sent to (RFC 9207).
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish(
    c: &Call,
    provider: &str,
    redirect_uri: &str,
    code_challenge: Option<&String>,
    sealed_state: Option<&Sealed>,
    sealed_gate_base: Option<&Sealed>,
    binding: &StateToken,
    outcome: Result<Issuance, BrokerError>,
) -> Out {
    // Stored by `get` after validation; checked again so that a row can never
    // send a browser anywhere else (e.g. after the operator shortened REDIRECT_URIS).
    if !authorize::valid_redirect_uri(redirect_uri, &c.cfg.redirect_uris()) {
        return Err(BrokerError::BadRequest {
            code: "invalid_redirect_uri",
            what: "the client's redirect_uri is no longer allowed",
        });
    }
    let keys = c.cfg.keys()?;
    let state = match sealed_state {
        Some(s) => {
            let plain = keys.open_pending(Pending::ClientState, binding.secret(), s)?;
            Some(String::from_utf8(plain).map_err(|_| SealError::Open)?)
        }
        None => None,
    };
    let state = state.as_deref();
    let gate_base = match sealed_gate_base {
        Some(s) => {
            let plain = keys.open_pending(Pending::GateBase, binding.secret(), s)?;
            String::from_utf8(plain).map_err(|_| SealError::Open)?
        }
        None => String::new(),
    };
    let issuer = oauth2::issuer(&c.cfg.origin, &gate_base);
    let issuance = match outcome {
        Ok(issuance) => issuance,
        Err(e) => {
            let (error, description) = match e {
                BrokerError::LoginDenied => ("access_denied", "the user or the provider refused"),
                BrokerError::ProviderFailed | BrokerError::ProviderTimeout => (
                    "temporarily_unavailable",
                    "the provider did not complete the login",
                ),
                _ => ("server_error", "the login could not be completed"),
            };
            return error_back(redirect_uri, error, description, state, &issuer);
        }
    };
    let code = crate::random::token_b64url(32)
        .map_err(|_| BrokerError::internal("no randomness for an authorization code"))?;
    // The whole first answer, sealed under the code: redeeming it needs
    // nothing that can fail after the code is spent (`crate::redeem`).
    let sealed = keys.seal_pending(Pending::AuthorizationCode, &code, &issuance.to_bytes())?;
    let now = c.cfg.now;
    let record = CodeRecord {
        provider: provider.to_string(),
        redirect_uri: redirect_uri.to_string(),
        code_challenge: code_challenge.cloned(),
        expires_at: now + CODE_TTL_SECS,
    };
    c.db()?
        .insert_code(&authorize::code_hash(&code), &record, &sealed, now)
        .await?;
    let to = authorize::code_redirect(redirect_uri, &code, state, &issuer).ok_or(
        BrokerError::BadRequest {
            code: "invalid_redirect_uri",
            what: "the redirect_uri is not a URI",
        },
    )?;
    Ok(redirect(&to).with_cookie(login::clear_cookie()))
}
