//! Abuse controls before any work, as the route's table row asks: the per-IP
//! rate limit, then the operator's access gate (`ACCESS_KEYS`). The per-grant
//! limit is applied by the refresh route, once it knows the grant.

use super::call::Call;
use crate::access;
use crate::error::BrokerError;
use crate::pages;
use crate::route::{Method, Surface};

/// Seconds in the rate-limit window (`period` of the `[[ratelimits]]` bindings).
const RATE_LIMIT_PERIOD: u32 = 60;

/// The per-client-address limit's binding (the table's `ip_limited`).
pub const PER_IP_LIMIT: &str = "RL_PER_IP";

/// Runs the row's checks.
pub async fn admit(call: &Call, ip_limited: bool, gated: bool) -> Result<(), BrokerError> {
    if ip_limited {
        rate_limit(call, PER_IP_LIMIT, call.client_key()?).await?;
    }
    if gated {
        let header = call.header("X-Access-Key");
        let presented = access::presented_key(
            header.as_deref(),
            call.path_key.as_deref(),
            call.query("key")?,
        );
        if !call.cfg.gate_allows(presented) {
            return Err(access::KEY_REQUIRED);
        }
    }
    Ok(())
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

/// The gate's answer to a browser that came to a page without the key: a
/// page with a form that asks for it (API routes and POSTs keep their error).
/// The request's other query values ride along; a wrong key is never shown.
pub fn key_form(
    call: &Call,
    err: &BrokerError,
    surface: Surface,
    method: Method,
    path: &str,
) -> Option<pages::Page> {
    if *err != access::KEY_REQUIRED || surface != Surface::Page || method != Method::Get {
        return None;
    }
    let keep: Vec<(String, String)> = call
        .query
        .iter()
        .filter(|(name, _)| name != "key")
        .cloned()
        .collect();
    Some(pages::key_form(path, &keep, err))
}
