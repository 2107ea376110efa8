//! Outbound calls to a provider, each bounded by a timeout
//! ([`crate::refresh::upstream_timeout_ms`]). Only
//! status and body come back; bodies are classified by the core and never
//! echoed or logged.

use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{AbortController, AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::error::BrokerError;
use crate::upstream::{classify, FormPost, Upstream, MAX_TOKEN_RESPONSE_BYTES};

async fn call(post: &FormPost, signal: &AbortSignal) -> Result<(u16, Vec<u8>), BrokerError> {
    let headers = Headers::new();
    let set = |k, v| headers.set(k, v).map_err(|_| BrokerError::Internal);
    set("Content-Type", "application/x-www-form-urlencoded")?;
    set("Accept", "application/json")?;
    set("User-Agent", "oauth-broker")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&post.body)));
    let req = Request::new_with_init(&post.url, &init).map_err(|_| BrokerError::Internal)?;
    // A refused connection or DNS failure is a provider failure (502), retryable.
    let mut resp = Fetch::Request(req)
        .send_with_signal(signal)
        .await
        .map_err(|_| BrokerError::ProviderFailed)?;
    let body = resp
        .bytes()
        .await
        .map_err(|_| BrokerError::ProviderFailed)?;
    Ok((resp.status_code(), body))
}

/// Sends `post`, giving up (and aborting the request) after the timeout: a
/// provider that hangs must not hold the refresh lease or the client.
async fn bounded(post: &FormPost, timeout_ms: u64) -> Result<(u16, Vec<u8>), BrokerError> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let timeout = Delay::from(Duration::from_millis(timeout_ms));
    let raced = select(Box::pin(call(post, &signal)), Box::pin(timeout)).await;
    match raced {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(BrokerError::ProviderTimeout)
        }
    }
}

/// POSTs a token request and classifies the answer.
pub async fn post_form(post: &FormPost, timeout_ms: u64) -> Result<Upstream, BrokerError> {
    let (status, body) = bounded(post, timeout_ms).await?;
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Ok(Upstream::Failed);
    }
    Ok(classify(status, &body))
}

/// POSTs a request whose answer only matters by status (revocation).
pub async fn post_status(post: &FormPost, timeout_ms: u64) -> Result<u16, BrokerError> {
    Ok(bounded(post, timeout_ms).await?.0)
}
