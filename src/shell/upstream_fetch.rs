//! Outbound calls to a provider, each bounded by a timeout
//! ([`crate::refresh::upstream_timeout_ms`]). Only status and body come back;
//! bodies are classified by the core and never echoed or logged.

use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{AbortController, AbortSignal, Delay, Fetch, Headers, Method, Request};

use crate::config::Config;
use crate::error::BrokerError;
use crate::pages::RevokeOutcome;
use crate::secret::RefreshToken;
use crate::shell::{clock, log};
use crate::upstream::{self, classify, Failure, FormPost, Upstream, MAX_TOKEN_RESPONSE_BYTES};

/// One outbound request: what `call` sends (a body is a form).
struct Outbound<'a> {
    method: Method,
    url: &'a str,
    headers: &'a [(&'a str, String)],
    body: Option<&'a str>,
}

impl<'a> Outbound<'a> {
    /// A form POST to a provider's token or revocation endpoint.
    fn form(post: &'a FormPost) -> Outbound<'a> {
        Outbound {
            method: Method::Post,
            url: &post.url,
            headers: &[],
            body: Some(&post.body),
        }
    }
}

/// What an upstream server answered: its status and its body, unread.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

async fn call(out: &Outbound<'_>, signal: &AbortSignal) -> Result<Answer, BrokerError> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|e| BrokerError::internal(format!("upstream headers: {e}")))
    };
    if out.body.is_some() {
        set("Content-Type", "application/x-www-form-urlencoded")?;
    }
    set("Accept", "application/json")?;
    set("User-Agent", "oauth-broker")?;
    for (k, v) in out.headers {
        set(k, v)?;
    }
    // web_sys's RequestInit rather than worker's: worker's converts its `cf`
    // properties (image resizing, Polish, ...) too, code and strings this
    // broker never uses (size: docs/develop.md, "Size"). The same fields as worker 0.8.7's
    // `From<&RequestInit>` sets for a default `cf`: headers, method, redirect
    // (`follow`, fetch's default), body.
    let init = web_sys::RequestInit::new();
    init.set_headers(headers.0.as_ref());
    init.set_method(out.method.as_ref());
    init.set_redirect(web_sys::RequestRedirect::Follow);
    if let Some(body) = out.body {
        init.set_body(&JsValue::from_str(body));
    }
    let req = web_sys::Request::new_with_str_and_init(out.url, &init)
        .map(Request::from)
        .map_err(|e| {
            let why = e.as_string();
            BrokerError::internal(format!(
                "upstream request: {}",
                why.as_deref()
                    .unwrap_or("invalid URL or options for Request")
            ))
        })?;
    // A refused connection or DNS failure is a provider failure (502), retryable.
    let mut resp = Fetch::Request(req)
        .send_with_signal(signal)
        .await
        .map_err(|_| BrokerError::ProviderFailed)?;
    let body = resp
        .bytes()
        .await
        .map_err(|_| BrokerError::ProviderFailed)?;
    Ok(Answer {
        status: resp.status_code(),
        body,
    })
}

/// Sends `out`, giving up (and aborting the request) after the timeout: a
/// provider that hangs must not hold the refresh lease or the client.
async fn bounded(out: &Outbound<'_>, timeout_ms: u64) -> Result<Answer, BrokerError> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let timeout = Delay::from(Duration::from_millis(timeout_ms));
    let raced = select(Box::pin(call(out, &signal)), Box::pin(timeout)).await;
    match raced {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(BrokerError::ProviderTimeout)
        }
    }
}

/// A GET with `headers` (e.g. an oauth-handler's `/export`), bounded like a
/// provider call; status and body come back for the core to classify.
pub async fn get(
    url: &str,
    headers: &[(&str, String)],
    timeout_ms: u64,
) -> Result<Answer, BrokerError> {
    let out = Outbound {
        method: Method::Get,
        url,
        headers,
        body: None,
    };
    bounded(&out, timeout_ms).await
}

/// POSTs a token request to `provider` (`grant_type`: its grant type) and
/// classifies the answer. Each call is one log line (`upstream_token`): the
/// provider, the grant type, the upstream status and OAuth error code, the
/// outcome and how long it took; never the body.
pub async fn post_form(
    post: &FormPost,
    provider: &str,
    grant_type: &'static str,
    timeout_ms: u64,
) -> Result<Upstream, BrokerError> {
    let started = clock::now_ms();
    let answered = bounded(&Outbound::form(post), timeout_ms).await;
    let (result, status, oauth_error) = match answered {
        Ok(Answer { status, body }) if body.len() > MAX_TOKEN_RESPONSE_BYTES => {
            (Ok(Upstream::Failed(Failure::Malformed)), Some(status), None)
        }
        Ok(Answer { status, body }) => (
            Ok(classify(status, &body)),
            Some(status),
            upstream::oauth_error(&body),
        ),
        Err(e) => (Err(e), None, None),
    };
    let level = match &result {
        Ok(Upstream::Ok(_)) => log::Level::Info,
        // The user's grant or code, not the broker: a warning.
        Ok(Upstream::InvalidGrant) => log::Level::Warn,
        _ => log::Level::Error,
    };
    log::write(
        level,
        "upstream_token",
        serde_json::json!({
            "provider": provider,
            "grant": grant_type,
            "outcome": upstream::outcome(&result),
            "upstream_status": status,
            "oauth_error": oauth_error,
            "duration_ms": clock::now_ms().saturating_sub(started),
        }),
    );
    result
}

/// One `refresh_token` grant at the provider `provider_id` names, waiting up
/// to `timeout_ms`: the one way both stored (v1) and pass-through (v2) grants
/// are refreshed upstream.
pub async fn refresh(
    cfg: &Config,
    provider_id: &str,
    refresh_token: &RefreshToken,
    timeout_ms: u64,
) -> Result<Upstream, BrokerError> {
    let (provider, secret) = cfg.provider(provider_id)?;
    let post = upstream::refresh(
        provider,
        secret,
        refresh_token,
        &cfg.redirect_uri(&provider.id),
    );
    post_form(&post, &provider.id, "refresh_token", timeout_ms).await
}

/// Revokes a refresh token at its provider (RFC 7009), where it has an endpoint.
pub async fn revoke(
    cfg: &Config,
    provider_id: &str,
    refresh_token: &RefreshToken,
) -> RevokeOutcome {
    let Ok((provider, secret)) = cfg.provider(provider_id) else {
        return RevokeOutcome::ProviderFailed;
    };
    let Some(post) = upstream::revoke(provider, secret, refresh_token) else {
        return RevokeOutcome::NoProviderEndpoint;
    };
    match bounded(&Outbound::form(&post), cfg.upstream_timeout_ms).await {
        Ok(Answer { status, .. }) if (200..300).contains(&status) => RevokeOutcome::ProviderRevoked,
        _ => RevokeOutcome::ProviderFailed,
    }
}
