//! `POST /oauth/token` (and `/token`): the OAuth 2.0 token endpoint (RFC 6749
//! §3.2, §5; RFC 8628 §3.4). The refresh token is the authid: a
//! `refresh_token` grant is served by the same token service as `/refresh`
//! (`crate::shell::tokens`: single flight, cache, failure semantics), and the
//! code and device-code grants are redeemed by the token service too
//! (`tokens::redeem_code`, `tokens::redeem_device_code`), answering with the
//! first answer sealed with the code (`crate::redeem`).
//! Parsing and the answers' shapes are `crate::oauth2`.

use std::cell::RefCell;

use crate::digest::sha256_hex;
use crate::error::BrokerError;
use crate::oauth2::{self, FailureMemo, GrantType};
use crate::redeem::Redeemed;
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::guard::admit_client;
use crate::shell::respond::{oauth_ok, Out};
use crate::shell::tokens::{self, ForClient};

thread_local! {
    /// Failed refreshes of this isolate that cost a provider call (see
    /// `oauth2::FailureMemo`): x/oauth2's second, body-auth attempt right after
    /// a Basic one gets the same answer without a second provider call.
    static RECENT_FAILURES: RefCell<FailureMemo> = RefCell::new(FailureMemo::default());
}

pub async fn post(c: &mut Call) -> Out {
    let form = c.form().await?;
    let authorization = c.header("Authorization");
    let request = oauth2::parse_token_request(authorization.as_deref(), &form)?;
    admit_client(c, request.client.secret.as_deref())?;
    let client_id = request.client.id.as_deref();
    match request.grant_type {
        GrantType::RefreshToken(raw) => refresh(c, &raw, client_id).await,
        GrantType::AuthorizationCode => {
            let r = tokens::redeem_code(c, &form, client_id).await?;
            redeemed(c, r).await
        }
        GrantType::DeviceCode => {
            let r = tokens::redeem_device_code(c, &form, client_id).await?;
            redeemed(c, r).await
        }
    }
}

/// `grant_type=refresh_token`: the authid (v1 or v2) through the token
/// service. A `client_id`, when sent, must name the authid's provider
/// (RFC 6749 §6: the refresh token is bound to the client it was issued to).
async fn refresh(c: &Call, raw: &str, client_id: Option<&str>) -> Out {
    let key = sha256_hex(raw);
    let recalled = RECENT_FAILURES.with(|m| m.borrow_mut().recall(&key, clock::now_ms()));
    if let Some(e) = recalled {
        return Err(e);
    }
    let client = client_id.map(|provider| ForClient {
        provider,
        refusal: BrokerError::BadRequest {
            code: "invalid_grant",
            what: "the refresh token was issued to another client_id (provider)",
        },
    });
    match tokens::for_authid(c, raw, client).await {
        Ok(issued) => {
            let next = oauth2::changed_refresh_token(raw, issued.next_authid.as_deref());
            oauth_ok(oauth2::token_response(
                issued.token.secret(),
                issued.remaining,
                next,
            ))
        }
        Err(e) => {
            RECENT_FAILURES.with(|m| m.borrow_mut().remember(key, &e, clock::now_ms()));
            Err(e)
        }
    }
}

/// A one-time code's outcome: the new grant's access token with its authid
/// as the refresh token, or the RFC 6749 §5.2 / RFC 8628 §3.5 error.
async fn redeemed(c: &Call, r: Redeemed) -> Out {
    let code = |code: &'static str, what: &'static str| BrokerError::BadRequest { code, what };
    match r {
        // The first answer, as sealed with the code: nothing to fetch.
        Redeemed::Issued(issuance) => oauth_ok(oauth2::token_response(
            issuance.access_token.secret(),
            issuance.expires_in(c.cfg.now),
            Some(issuance.shown_authid()),
        )),
        Redeemed::Pending => Err(code(
            "authorization_pending",
            "the user has not finished the login yet",
        )),
        Redeemed::SlowDown => Err(code(
            "slow_down",
            "polled faster than the interval; wait 5 seconds longer",
        )),
        Redeemed::Denied => Err(code("access_denied", "the login was refused")),
        Redeemed::Expired => Err(code(
            "expired_token",
            "the device code has expired; start again",
        )),
        Redeemed::Invalid(why) => Err(code("invalid_grant", why)),
    }
}
