//! `GET /callback/<provider>`: the provider sends the browser back. Check the
//! state against the browser's cookie, then consume it, exchange the code (with
//! the client secret and the PKCE verifier), keep the grant, and show the authid
//! once — and, for Duplicati's old UI, leave it waiting for the user's
//! confirmation (`handoff.rs`).

use super::{akeeba, authorize, device, handoff, reauthorize};
use crate::cookie;
use crate::error::BrokerError;
use crate::grant::DEFAULT_EXPIRES_IN;
use crate::login::{self, LoginEnding, LoginRecord};
use crate::opener;
use crate::pages;
use crate::pkce::PkceVerifier;
use crate::providers::{canonical_id, Provider};
use crate::redeem::Issuance;
use crate::secret::{AccessToken, StateToken};
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::tokens;
use crate::shell::upstream_fetch;
use crate::storage::Logins as _;
use crate::upstream::{self, Upstream};

pub async fn get(c: &mut Call) -> Out {
    let state = c
        .query("state")?
        .filter(|s| !s.is_empty())
        .map(|s| StateToken::new(s.to_string()))
        .ok_or(BrokerError::InvalidLoginState)?;
    let cookie = c
        .header("Cookie")
        .and_then(|h| login::cookie_from_header(&h));
    // Check first, consume after (`crate::login`): a request with the state but
    // without this browser's cookie is refused here and consumes nothing.
    let db = c.db()?;
    let found = db.find_login(&state, c.cfg.now).await?;
    let verifier = login::verify_callback(
        found.as_ref(),
        canonical_id(&c.rest),
        &state,
        cookie.as_ref(),
        c.cfg.now,
    )?;
    let cookie = cookie.ok_or(BrokerError::InvalidLoginState)?;
    // The delete is conditional on the same cookie, so even a row that changed
    // since the read is consumed by this browser only, and by one request only.
    // From here on, whatever happens, this state cannot be used again.
    let record = db
        .take_login(&state, &login::binding_hash(&cookie), c.cfg.now)
        .await?
        .ok_or(BrokerError::InvalidLoginState)?;
    // Every door starts the same login; only its ending differs. The
    // OAuth 2.0 doors hear about a failure too (an `error=` redirect, a
    // denied device); the result page shows it as an error page.
    if let LoginEnding::Reauthorize { authid } = &record.ending {
        // A failure here is tried again as a re-authorization (the same
        // authid), never as a new login.
        c.restart = Some(format!("{}{}", c.base, crate::error::REAUTHORIZE_PATH));
        let code = exchange_code(c, &record, &verifier).await?;
        return reauthorize::finish(c, authid, &cookie, code.provider, code.resp).await;
    }
    let outcome = exchange(c, &record, &verifier).await;
    match &record.ending {
        LoginEnding::ResultPage => {
            let made = outcome?;
            result_page(c, &record, made.provider, &made.shown, made.region).await
        }
        LoginEnding::Akeeba { engine } => {
            let made = outcome?;
            akeeba::result_page(
                c,
                engine,
                made.provider,
                made.first.access_token.secret(),
                &made.shown,
            )
        }
        LoginEnding::Authorize {
            redirect_uri,
            code_challenge,
            state,
            gate_base,
        } => {
            authorize::finish(
                c,
                &record.provider,
                redirect_uri,
                code_challenge.as_ref(),
                state.as_ref(),
                gate_base.as_ref(),
                &cookie,
                outcome.map(Exchanged::issuance),
            )
            .await
        }
        LoginEnding::Device { device_code_hash } => {
            device::finish(c, device_code_hash, outcome.map(Exchanged::issuance)).await
        }
        // Answered above, before any grant is minted.
        LoginEnding::Reauthorize { .. } => Err(BrokerError::InvalidLoginState),
    }
}

/// What a login made.
struct Exchanged<'c> {
    provider: &'c Provider,
    /// What the login shows (`mint`): the authid, or pCloud's access token.
    shown: String,
    /// pCloud: the account's region.
    region: Option<pages::Region<'c>>,
    /// The code exchange's access token: Akeeba's helper page shows it, and
    /// the OAuth 2.0 doors keep it sealed with their code as the first answer.
    first: FirstToken,
}

/// The access token a login's code exchange obtained.
struct FirstToken {
    access_token: AccessToken,
    expires_at: i64,
}

impl Exchanged<'_> {
    /// The first answer of a login whose authid goes to a client (`crate::redeem`).
    fn issuance(self) -> Issuance {
        Issuance::new(self.shown, self.first.access_token, self.first.expires_at)
    }
}

/// A login's code, exchanged: the provider's token answer.
struct CodeExchanged<'c> {
    provider: &'c Provider,
    resp: upstream::TokenResponse,
    /// pCloud: the account's region.
    region: Option<pages::Region<'c>>,
}

/// The provider's answer to the login: exchange its code (with the client
/// secret and the PKCE verifier) and keep the grant.
async fn exchange<'c>(
    c: &'c Call,
    record: &LoginRecord,
    verifier: &PkceVerifier,
) -> Result<Exchanged<'c>, BrokerError> {
    let CodeExchanged {
        provider,
        resp,
        region,
    } = exchange_code(c, record, verifier).await?;
    let first = FirstToken {
        access_token: AccessToken::new(resp.access_token().to_string()),
        expires_at: c
            .cfg
            .now
            .saturating_add(resp.expires_in().unwrap_or(DEFAULT_EXPIRES_IN)),
    };
    let shown = tokens::mint(c, provider, record.token_version, resp).await?;
    Ok(Exchanged {
        provider,
        shown,
        region,
        first,
    })
}

/// Exchanges the login's code (with the client secret and the PKCE
/// verifier) for the provider's token answer; nothing is kept yet.
async fn exchange_code<'c>(
    c: &'c Call,
    record: &LoginRecord,
    verifier: &PkceVerifier,
) -> Result<CodeExchanged<'c>, BrokerError> {
    if c.query("error")?.is_some() {
        return Err(BrokerError::LoginDenied);
    }
    let code = c
        .query("code")?
        .filter(|code| !code.is_empty())
        .ok_or(BrokerError::BadRequest {
            code: "missing_code",
            what: "the provider sent no authorization code",
        })?;
    let (provider, secret) = c.cfg.provider(&record.provider)?;
    // pCloud names the account's API host (`hostname`, with `locationid`):
    // only a host its catalogue entry lists is used, as a key, never as a URL.
    let endpoint =
        provider
            .token_endpoint(c.query("hostname")?)
            .map_err(|_| BrokerError::BadRequest {
                code: "unknown_region",
                what: "the provider named a region this broker does not know",
            })?;
    let post = upstream::code_exchange(
        provider,
        endpoint.token_url,
        secret,
        code,
        &c.cfg.redirect_uri(&provider.id),
        provider.pkce.then_some(verifier.secret()),
    );
    let resp = match upstream_fetch::post_form(
        &post,
        &provider.id,
        "authorization_code",
        c.cfg.upstream_timeout_ms,
    )
    .await?
    {
        Upstream::Ok(r) => r,
        Upstream::InvalidGrant => return Err(BrokerError::InvalidLoginState),
        Upstream::Failed(_) => return Err(BrokerError::ProviderFailed),
        Upstream::ClientRejected => return Err(BrokerError::ProviderRejectedClient),
    };
    let region = endpoint.region.map(|r| pages::Region {
        name: &r.region,
        host: &r.hostname,
    });
    Ok(CodeExchanged {
        provider,
        resp,
        region,
    })
}

/// The broker's own ending: the authid on a page with a copy button, posted
/// to Duplicati's new UI (allowlisted openers only) or left for the old UI's
/// confirmed hand-off.
async fn result_page(
    c: &Call,
    record: &LoginRecord,
    provider: &Provider,
    shown: &str,
    region: Option<pages::Region<'_>>,
) -> Out {
    let (left, clear_carrier) = match &record.fetch_token_hash {
        Some(expected) => {
            let (left, clear) = handoff::leave_for_confirmation(c, expected, shown).await?;
            (Some(left), Some(clear))
        }
        None => (None, None),
    };
    let prompt = match &left {
        Some(left) => handoff::prompt(left.as_ref()),
        None => pages::HandoffPrompt::None,
    };
    let hint = c
        .header("Cookie")
        .and_then(|h| cookie::value(&h, opener::HINT_COOKIE));
    let targets = c.cfg.opener_origins.targets(hint.as_deref());
    let page = pages::result(
        shown,
        (&provider.id, &provider.name),
        region,
        &targets,
        prompt,
        &c.cfg.oauth_url(),
    );
    let mut out = html(page)
        .with_cookie(login::clear_cookie())
        .with_cookie(cookie::set(opener::HINT_COOKIE, "", 0));
    if let Some(clear) = clear_carrier {
        out = out.with_cookie(clear);
    }
    Ok(out)
}
