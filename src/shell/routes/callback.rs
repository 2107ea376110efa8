//! `GET /callback/<provider>`: the provider sends the browser back. Check the
//! state against the browser's cookie, then consume it, exchange the code (with
//! the client secret and the PKCE verifier), keep the grant, and show the authid
//! once — and, for Duplicati's old UI, leave it waiting for the user's
//! confirmation (`handoff.rs`).

use super::{akeeba, authorize, device, handoff};
use crate::authid::{next_v2_authid, AuthId};
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::ids::ProviderId;
use crate::login::{self, LoginEnding, LoginRecord};
use crate::opener;
use crate::pages;
use crate::pkce::PkceVerifier;
use crate::providers::{canonical_id, Provider};
use crate::secret::StateToken;
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::upstream_fetch;
use crate::upstream::{self, TokenResponse, Upstream};

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
    let outcome = exchange(c, &record, &verifier).await;
    match &record.ending {
        LoginEnding::ResultPage => {
            let (provider, shown, region, _) = outcome?;
            result_page(c, &record, provider, &shown, region).await
        }
        LoginEnding::Akeeba { engine } => {
            let (provider, shown, _, access_token) = outcome?;
            let access_token = access_token.unwrap_or_default();
            akeeba::result_page(c, engine, provider, &access_token, &shown)
        }
        LoginEnding::Authorize {
            redirect_uri,
            code_challenge,
            state,
        } => {
            authorize::finish(
                c,
                &record.provider,
                redirect_uri,
                code_challenge.as_ref(),
                state.as_ref(),
                &cookie,
                outcome.map(|(_, shown, _, _)| shown),
            )
            .await
        }
        LoginEnding::Device { device_code_hash } => {
            device::finish(c, device_code_hash, outcome.map(|(_, shown, _, _)| shown)).await
        }
    }
}

/// What a login made: the provider, what the login shows (`mint`), for
/// pCloud the account's region, and for Akeeba's helper page the first
/// access token.
type Exchanged<'c> = (
    &'c Provider,
    String,
    Option<pages::Region<'c>>,
    Option<String>,
);

/// The provider's answer to the login: exchange its code (with the client
/// secret and the PKCE verifier) and keep the grant.
async fn exchange<'c>(
    c: &'c Call,
    record: &LoginRecord,
    verifier: &PkceVerifier,
) -> Result<Exchanged<'c>, BrokerError> {
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
    let resp = match upstream_fetch::post_form(&post, c.cfg.upstream_timeout_ms).await? {
        Upstream::Ok(r) => r,
        Upstream::InvalidGrant => return Err(BrokerError::InvalidLoginState),
        Upstream::Failed => return Err(BrokerError::ProviderFailed),
    };
    // Akeeba's helper page shows the first access token too (`akeeba.rs`).
    let access_token = match record.ending {
        LoginEnding::Akeeba { .. } => Some(resp.access_token().to_string()),
        _ => None,
    };
    let shown = mint(c, provider, record.token_version, resp).await?;
    let region = endpoint.region.map(|r| pages::Region {
        name: &r.region,
        host: &r.hostname,
    });
    Ok((provider, shown, region, access_token))
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
        .and_then(|h| login::cookie_value(&h, opener::HINT_COOKIE));
    let targets = c.cfg.opener_origins.targets(hint.as_deref());
    let page = pages::result(
        shown,
        &provider.name,
        region,
        &targets,
        prompt,
        &c.cfg.oauth_url(),
    );
    let mut out = html(page)
        .with_cookie(login::clear_cookie())
        .with_cookie(login::cookie(opener::HINT_COOKIE, "", 0));
    if let Some(clear) = clear_carrier {
        out = out.with_cookie(clear);
    }
    Ok(out)
}

/// What the result page shows for a completed code exchange: a new stored (v1)
/// authid, a pass-through (v2) authid, or, for pCloud, the access token itself.
/// Also how a CLI-token login (`cli_token.rs`) keeps its grant.
pub(super) async fn mint(
    c: &Call,
    provider: &Provider,
    token_version: u8,
    resp: TokenResponse,
) -> Result<String, BrokerError> {
    if provider.access_token_is_authid {
        // pCloud: the token never expires and there is no refresh token; Duplicati
        // uses the access token itself as the authid. Nothing is stored.
        return Ok(resp.access_token().to_string());
    }
    let grant = Grant::from_code_exchange(resp, c.cfg.now)?;
    if token_version == 2 {
        // Stateless (Akeeba-style): the authid carries the refresh token; nothing
        // is stored. A token too long to be presented again as an authid is kept
        // here instead (a stored v1 authid), so the login still yields one that works.
        let rt = grant
            .refresh_token()
            .ok_or_else(|| BrokerError::internal("a new grant without a refresh token"))?;
        if let Some(authid) = next_v2_authid(&provider.id, &rt) {
            return Ok(authid);
        }
    }
    // On a shard drawn at random; the authid names it (`crate::authid`).
    let authid = AuthId::generate(c.cfg.shard_for_new_grant()?)?;
    let shown = authid.expose();
    c.vault()?
        .grant(authid)?
        .insert(&ProviderId::new(&provider.id), &grant, c.cfg.now)
        .await?;
    Ok(shown)
}
