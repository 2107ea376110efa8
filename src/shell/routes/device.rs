//! The device authorization grant (RFC 8628): `POST /oauth/device_authorization`
//! (the device asks for codes), `GET`/`POST /device` (the verification page:
//! enter the code, see the provider, click, log in) and the end of that login
//! (called from `callback.rs`). Device codes are redeemed by the token service
//! (`tokens::redeem_device_code`). Every decision is `crate::device`'s.

use crate::cookie;
use crate::device::{self, DeviceRecord, Status};
use crate::error::BrokerError;
use crate::login::{self, LoginEnding};
use crate::oauth2;
use crate::pages;
use crate::redeem::Issuance;
use crate::request::single;
use crate::seal::Pending;
use crate::secret::ct_eq;
use crate::shell::call::Call;
use crate::shell::guard::{admit_client, count_miss, rate_limit, refuse_if_spent};
use crate::shell::respond::{html, oauth_ok, redirect, Out};
use crate::shell::store::Db;
use crate::storage::{Devices as _, Logins as _};

/// Per-IP limit on the verification page's code checks (RFC 8628 §5.1:
/// user codes are short, so guessing must be rate-limited).
const USER_CODE_LIMIT: &str = "RL_USER_CODE";
/// Budgets of *missed* code lookups (a right code spends nothing), against a
/// guesser with many addresses: per network (`access::network_key`: the
/// IPv6 /48, the IPv4 /24), and one for all clients together.
const USER_CODE_NETWORK_LIMIT: &str = "RL_USER_CODE_48";
const USER_CODE_GLOBAL_LIMIT: &str = "RL_USER_CODE_GLOBAL";
/// The global budget's one key.
const EVERYONE: &str = "all";
/// Cookie binding the confirmation form to the browser that saw it, so a
/// cross-site form post cannot approve a device in the user's name
/// (`SameSite=Lax` keeps it off cross-site POSTs).
const CONFIRM_COOKIE: &str = "__Host-broker-device";

/// `POST /oauth/device_authorization` `client_id=<provider>` (RFC 8628 §3.1,
/// §3.2). The client authenticates as at the token endpoint (RFC 6749
/// §2.3.1, by HTTP Basic or in the body), so behind the access gate the key
/// may be its `client_secret` ([`admit_client`]).
pub async fn authorization(c: &mut Call) -> Out {
    let form = c.form().await?;
    let authorization = c.header("Authorization");
    let client = oauth2::client_auth(authorization.as_deref(), &form)?;
    admit_client(c, client.secret.as_deref())?;
    let client_id = client.id.as_deref().ok_or(BrokerError::BadRequest {
        code: "invalid_request",
        what: "client_id (the provider) is missing",
    })?;
    let unknown = BrokerError::BadRequest {
        code: "invalid_client",
        what: "client_id names no provider this broker offers",
    };
    let (provider, _) = c.cfg.provider(client_id).map_err(|e| match e {
        BrokerError::UnknownProvider => unknown.clone(),
        other => other,
    })?;
    if !provider.browser_login_with_refresh_token() {
        return Err(BrokerError::BadRequest {
            code: "unauthorized_client",
            what: "this provider cannot be used with the device flow",
        });
    }
    let now = c.cfg.now;
    let db = c.db()?;
    let record = DeviceRecord {
        provider: provider.id.clone(),
        status: Status::Pending,
        interval: device::INTERVAL_SECS,
        last_poll_at: None,
        expires_at: now + device::DEVICE_TTL_SECS,
        requested_from: device::country(c.req.cf().and_then(|cf| cf.country()).as_deref()),
    };
    let no_random = |_| BrokerError::internal("no randomness for a device code");
    // A user code already in use by a live row is drawn again (2^34.6 codes:
    // a repeat is rare, three in a row is not a thing).
    for _ in 0..3 {
        let device_code = crate::random::token_b64url(32).map_err(no_random)?;
        let user_code = device::generate_user_code().map_err(no_random)?;
        let stored = db
            .insert_device(
                &device::device_code_hash(&device_code),
                &device::user_code_hash(&user_code),
                &record,
                now,
            )
            .await?;
        if stored {
            let origin = format!("{}{}", c.cfg.origin, c.base);
            return oauth_ok(device::authorization_response(
                &origin,
                &device_code,
                &user_code,
            ));
        }
    }
    Err(BrokerError::internal("could not draw a free user code"))
}

/// `<base>/device` with `pairs` and the access key the request carried as
/// `?key=` (a `/k/<key>` prefix is in `base`).
fn device_url(c: &Call, pairs: &[(&str, &str)]) -> Result<String, BrokerError> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    if let Some(k) = c.query("key")? {
        q.append_pair("key", k);
    }
    let q = q.finish();
    Ok(match q.is_empty() {
        true => format!("{}/device", c.base),
        false => format!("{}/device?{q}", c.base),
    })
}

/// The verification page (RFC 8628 §3.3):
/// - `GET /device` shows the form (`?user_code=` prefills it);
/// - `POST /device user_code=…` checks the code and shows which provider the
///   device asks for, with two links (continue, deny) carrying a one-time
///   value also set as a cookie;
/// - `GET /device?user_code=…&confirm=…&decision=approve|deny` is the user's
///   click: with the cookie, it starts the provider login (or denies).
///
/// Every code check counts against `RL_USER_CODE`, so guessing is slow
/// whichever step is used for it; every lookup that misses counts against
/// `RL_USER_CODE_48` and `RL_USER_CODE_GLOBAL` too ([`lookup`]).
pub async fn page(c: &mut Call) -> Out {
    let is_post = matches!(c.req.method(), worker::Method::Post);
    let form = match is_post {
        true => {
            rate_limit(c, USER_CODE_LIMIT, c.client_key()?).await?;
            c.form().await?
        }
        false => c.query.clone(),
    };
    let confirm = single(&form, "confirm")?.filter(|s| !s.is_empty());
    if !is_post && confirm.is_none() {
        let prefill = single(&form, "user_code")?;
        return Ok(html(pages::device_form(&device_url(c, &[])?, prefill)));
    }
    if !is_post {
        rate_limit(c, USER_CODE_LIMIT, c.client_key()?).await?;
    }
    let user_code = single(&form, "user_code")?
        .and_then(device::normalize_user_code)
        .ok_or(BrokerError::BadRequest {
            code: "invalid_user_code",
            what: "that is not a device code (8 letters, like BCDF-GHJK)",
        })?;
    let now = c.cfg.now;
    let db = c.db()?;
    let (device_code_hash, record) = lookup(c, &db, &user_code).await?;
    let (provider, _) = c.cfg.provider(&record.provider)?;
    let Some(confirm) = confirm.filter(|_| !is_post) else {
        // First step: show which provider, and ask for the click.
        let token = crate::random::token_b64url(32)
            .map_err(|_| BrokerError::internal("no randomness for a confirmation"))?;
        let shown = device::display_user_code(&user_code);
        let link = |decision| {
            device_url(
                c,
                &[
                    ("user_code", shown.as_str()),
                    ("confirm", token.as_str()),
                    ("decision", decision),
                ],
            )
        };
        let page = pages::device_confirm(
            &provider.name,
            &shown,
            record.requested_at(),
            record.requested_from.as_deref(),
            &link("approve")?,
            &link("deny")?,
        );
        // The cookie binds the click to this browser AND to this device row.
        let bound = device::confirmation_binding(&token, &device_code_hash);
        return Ok(html(page).with_cookie(cookie::set(
            CONFIRM_COOKIE,
            &bound,
            device::DEVICE_TTL_SECS,
        )));
    };
    let cookie = c
        .header("Cookie")
        .and_then(|h| cookie::value(&h, CONFIRM_COOKIE))
        .unwrap_or_default();
    let expected = device::confirmation_binding(confirm, &device_code_hash);
    if !ct_eq(cookie.as_bytes(), expected.as_bytes()) {
        return Err(BrokerError::Forbidden {
            code: "confirmation_mismatch",
            what: "this confirmation was not made in this browser; enter the code again",
        });
    }
    let clear = cookie::set(CONFIRM_COOKIE, "", 0);
    match single(&form, "decision")? {
        Some("approve") => {}
        Some("deny") => {
            db.deny_device(&device_code_hash).await?;
            return Ok(html(pages::device_done(false)).with_cookie(clear));
        }
        _ => {
            return Err(BrokerError::BadRequest {
                code: "invalid_request",
                what: "decision must be approve or deny",
            })
        }
    }
    let started = login::start(
        provider,
        &c.cfg.origin,
        1,
        None,
        LoginEnding::Device { device_code_hash },
        now,
    )?;
    db.insert_login(&started.state, &started.record, now)
        .await?;
    Ok(redirect(&started.authorize_url)
        .with_cookie(login::set_cookie(&started.binding))
        .with_cookie(clear))
}

/// The pending device `user_code` names, within the miss budgets.
///
/// Only misses are counted: honest traffic is almost all right codes, so it
/// never spends these budgets, and a guesser's misses spend them. Once a
/// budget is spent, lookups under it are refused *before* the lookup, right
/// codes included, until the window ends (429 + `Retry-After`): before the
/// lookup a right code and a guess look alike, and a guess is worth only its
/// hits, so a spent budget that still looked codes up would bound nothing.
/// - The network budget (`RL_USER_CODE_48`) is what keeps a guesser with many
///   addresses slow; a right code is refused only when the guessing comes
///   from its own network (or its own address, `RL_USER_CODE`).
/// - The global budget (`RL_USER_CODE_GLOBAL`, one key) bounds guessing spread
///   over many networks. When it is spent, every code check waits until the
///   window ends, right codes included: device logins pause for at most a
///   minute at a time, during an attack large enough to spend it, rather than
///   let that attack go on finding codes (a found code lets its finder
///   approve the victim's device with the finder's account, or deny it).
async fn lookup(c: &Call, db: &Db, user_code: &str) -> Result<(String, DeviceRecord), BrokerError> {
    let network = c.network_key()?;
    refuse_if_spent(USER_CODE_GLOBAL_LIMIT, EVERYONE)?;
    refuse_if_spent(USER_CODE_NETWORK_LIMIT, &network)?;
    let found = db
        .pending_device_by_user_code(&device::user_code_hash(user_code), c.cfg.now)
        .await?;
    if let Some(found) = found {
        return Ok(found);
    }
    // Both are counted, whichever goes over.
    let by_network = count_miss(c, USER_CODE_NETWORK_LIMIT, &network).await;
    let by_everyone = count_miss(c, USER_CODE_GLOBAL_LIMIT, EVERYONE).await;
    by_network?;
    by_everyone?;
    Err(BrokerError::BadRequest {
        code: "unknown_user_code",
        what: "no device is waiting for that code (it may have expired); check it and try again",
    })
}

/// The callback's arm for [`LoginEnding::Device`]: approve the device with
/// the authid sealed, or mark it denied when the provider refused.
pub(super) async fn finish(
    c: &Call,
    device_code_hash: &str,
    outcome: Result<Issuance, BrokerError>,
) -> Out {
    let db = c.db()?;
    let issuance = match outcome {
        Ok(issuance) => issuance,
        Err(BrokerError::LoginDenied) => {
            db.deny_device(device_code_hash).await?;
            return Ok(html(pages::device_done(false)).with_cookie(login::clear_cookie()));
        }
        Err(e) => return Err(e),
    };
    // The whole first answer (`crate::redeem`), sealed under the device
    // code's hash (the browser never sees the code) and the server secret;
    // see `seal::Pending::DeviceCode`.
    let sealed =
        c.cfg
            .keys()?
            .seal_pending(Pending::DeviceCode, device_code_hash, &issuance.to_bytes())?;
    if !db
        .approve_device(device_code_hash, &sealed, c.cfg.now)
        .await?
    {
        return Err(BrokerError::Conflict {
            code: "device_code_expired",
            what: "the device's code expired or was already used; start again on the device",
        });
    }
    Ok(html(pages::device_done(true)).with_cookie(login::clear_cookie()))
}
