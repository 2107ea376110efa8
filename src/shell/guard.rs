//! Abuse controls before any work, as the route's table row asks: the per-IP
//! rate limit, then the operator's access gate (`ACCESS_KEYS`). The per-grant
//! limit is applied by the refresh route, once it knows the grant; the gate of
//! the front door's client-authenticating endpoints by their handlers, once
//! they have read the client's credentials ([`admit_client`]).

use std::cell::RefCell;

use super::call::Call;
use super::clock;
use crate::access;
use crate::error::BrokerError;
use crate::memo::Memo;
use crate::oauth2;
use crate::pages;
use crate::route::{Method, Surface};

/// Seconds in the rate-limit window (`period` of the `[[ratelimits]]` bindings).
const RATE_LIMIT_PERIOD: u32 = 60;

/// The per-client-address limit's binding (the table's `ip_limited`).
pub const PER_IP_LIMIT: &str = "RL_PER_IP";

/// At most this many spent miss budgets are remembered per isolate.
const SPENT_CAP: usize = 1024;

thread_local! {
    /// Miss budgets this isolate saw go over their limit, by binding and key,
    /// until their window ends ([`count_miss`]).
    static SPENT: RefCell<Memo> = RefCell::new(Memo::new(SPENT_CAP));
}

/// Runs the row's checks.
pub async fn admit(call: &Call, ip_limited: bool, gated: bool) -> Result<(), BrokerError> {
    if ip_limited {
        rate_limit(call, PER_IP_LIMIT, call.client_key()?).await?;
    }
    if gated && !call.cfg.gate_allows(presented_key(call)?.as_deref()) {
        return Err(access::KEY_REQUIRED);
    }
    Ok(())
}

/// The key the request presents at the gate ([`access::presented_key`]).
fn presented_key(call: &Call) -> Result<Option<String>, BrokerError> {
    let header = call.header("X-Access-Key");
    let key = access::presented_key(
        header.as_deref(),
        call.path_key.as_deref(),
        call.query("key")?,
    );
    Ok(key.map(str::to_string))
}

/// The access gate on the OAuth 2.0 front door's endpoints that authenticate
/// a client (the token and device authorization endpoints, RFC 6749 §2.3.1,
/// RFC 8628 §3.1), read by their handlers rather than from the table row: the
/// key may come as the client's `client_secret` (HTTP Basic or form), which
/// the router cannot see before the body is read, or any of the usual ways
/// (`X-Access-Key`, `/k/<key>/`, `key=`). A wrong key is RFC 6749 §5.2
/// `invalid_client`.
pub fn admit_client(c: &Call, client_secret: Option<&str>) -> Result<(), BrokerError> {
    let usual = presented_key(c)?;
    // Either way lets the request in: rclone 1.60 sends its own built-in
    // client secret whenever only client_id is configured (rclone/rclone
    // v1.60.1 lib/oauthutil/oauthutil.go:332-341 replaces the id and keeps
    // the secret; backend/drive/drive.go:84-88), so a client_secret that is
    // not a key must not hide a key given in the URL. Both are compared
    // (constant time each), so timing tells nothing of which matched.
    let by_secret = c.cfg.gate_allows(client_secret);
    let by_usual = c.cfg.gate_allows(usual.as_deref());
    if by_secret | by_usual {
        Ok(())
    } else {
        Err(oauth2::INVALID_CLIENT)
    }
}

/// One hit against a Workers rate-limit binding. A missing binding means the
/// operator turned that limit off; a failing one lets the request through
/// (availability over strictness: the limits protect quota, not secrets).
pub async fn rate_limit(call: &Call, binding: &str, key: String) -> Result<(), BrokerError> {
    let Ok(limiter) = call.env.rate_limiter(binding) else {
        return Ok(());
    };
    match limiter.limit(key).await {
        Ok(outcome) if !outcome.success => Err(BrokerError::RateLimited {
            retry_after: RATE_LIMIT_PERIOD,
        }),
        _ => Ok(()),
    }
}

/// Refuses (429) while `binding`'s budget for `key` is spent, as this
/// isolate last saw it in [`count_miss`]; counts nothing.
pub fn refuse_if_spent(binding: &str, key: &str) -> Result<(), BrokerError> {
    let memo_key = format!("{binding}|{key}");
    match SPENT.with_borrow_mut(|m| m.recall(&memo_key, clock::now_ms())) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Counts one miss (a failed lookup) against `binding` for `key`. A Workers
/// rate limiter only offers `limit(key)`, which counts and checks at once, so
/// a budget that counts misses alone is checked only when one happens: the
/// miss that goes over is answered 429, and [`refuse_if_spent`] refuses the
/// lookups after it until the limiter's window ends (windows are `period`
/// long and aligned to the clock; an isolate that has not seen the budget go
/// over lets one more lookup through, whose miss it then sees go over).
/// A missing or failing binding counts nothing (as [`rate_limit`]).
pub async fn count_miss(call: &Call, binding: &str, key: &str) -> Result<(), BrokerError> {
    let Ok(limiter) = call.env.rate_limiter(binding) else {
        return Ok(());
    };
    match limiter.limit(key.to_string()).await {
        Ok(outcome) if !outcome.success => {
            let spent = BrokerError::RateLimited {
                retry_after: RATE_LIMIT_PERIOD,
            };
            let now = clock::now_ms();
            let period_ms = u64::from(RATE_LIMIT_PERIOD) * 1000;
            let window_end = now - now % period_ms + period_ms;
            SPENT.with_borrow_mut(|m| {
                m.remember(format!("{binding}|{key}"), &spent, now, window_end)
            });
            Err(spent)
        }
        _ => Ok(()),
    }
}

/// The request's query without the key and the key form's mark: what the
/// key form, and the link that continues after it, send again.
fn kept_query(call: &Call) -> Vec<(String, String)> {
    call.query
        .iter()
        .filter(|(name, _)| name != "key" && name != access::KEY_ENTERED)
        .cloned()
        .collect()
}

/// Whether the gate's key form may stand in for this route's answer: a
/// browser page reached with `GET`.
fn asks_in_a_page(surface: Surface, method: Method) -> bool {
    surface == Surface::Page && method == Method::Get
}

/// The gate's answer to a browser that came to a page without the key: a
/// page with a form that asks for it (API routes and POSTs keep their error).
/// The request's other query values ride along; a wrong key is never shown,
/// only said to be wrong.
pub fn key_form(
    call: &Call,
    err: &BrokerError,
    surface: Surface,
    method: Method,
    path: &str,
) -> Option<pages::Page> {
    if *err != access::KEY_REQUIRED || !asks_in_a_page(surface, method) {
        return None;
    }
    let refused = presented_key(call).ok().flatten().is_some();
    Some(pages::key_form(path, &kept_query(call), err, refused))
}

/// The gate's answer to its key form's request (`access::KEY_ENTERED`) once
/// the key was let in ([`admit`]): a page whose *Continue* link sends the
/// request again with the key, instead of the route's own answer, which
/// would usually be a redirect to the provider that the browser refuses to
/// follow after a form. `None`: run the route.
pub fn key_accepted(
    call: &Call,
    gated: bool,
    surface: Surface,
    method: Method,
    path: &str,
) -> Option<pages::Page> {
    let entered = call
        .query
        .iter()
        .any(|(name, _)| name == access::KEY_ENTERED);
    if !gated || !entered || !asks_in_a_page(surface, method) {
        return None;
    }
    // `admit` read the same key without an error.
    let key = presented_key(call).ok().flatten()?;
    Some(pages::key_accepted(path, &kept_query(call), &key))
}
