//! Response shaping: one place that turns a handler's outcome into a
//! `worker::Response` with the right status, body and security headers.

use worker::{Headers, Response};

use crate::error::BrokerError;
use crate::pages;

/// What a handler produced.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub extra_cookie: Option<String>,
}

/// How a handler failed: API routes answer JSON, browser routes an HTML page.
/// Both carry the same status, code and `X-Reason`.
pub enum Failure {
    Json(BrokerError),
    Page(BrokerError),
}
pub use Failure::Page;

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Failure {
        Failure::Json(e)
    }
}

pub type Out = Result<Reply, Failure>;

fn reply(status: u16, content_type: &'static str, body: String) -> Reply {
    Reply {
        status,
        content_type,
        body,
        location: None,
        set_cookie: None,
        extra_cookie: None,
    }
}

pub fn text(body: &str) -> Out {
    Ok(reply(200, "text/plain; charset=utf-8", body.to_string()))
}

pub fn html(page: pages::Page) -> Reply {
    reply(page.status, "text/html; charset=utf-8", page.html)
}

pub fn json_ok(v: serde_json::Value) -> Out {
    Ok(reply(200, "application/json", v.to_string()))
}

pub fn redirect(location: &str, set_cookie: impl Into<Option<String>>) -> Out {
    let mut r = reply(302, "text/plain; charset=utf-8", String::new());
    r.location = Some(location.to_string());
    r.set_cookie = set_cookie.into();
    Ok(r)
}

pub fn javascript(body: String) -> Out {
    Ok(reply(200, "application/javascript", body))
}

/// Builds the response with the headers of [`crate::headers::response_headers`].
pub fn finish(out: Out, https: bool) -> worker::Result<Response> {
    let (r, err) = match out {
        Ok(r) => (r, None),
        Err(Failure::Json(e)) => (
            reply(e.status(), "application/json", e.json_body()),
            Some(e),
        ),
        Err(Failure::Page(e)) => (html(pages::error(&e)), Some(e)),
    };
    let headers = Headers::new();
    for (name, value) in crate::headers::response_headers(r.content_type, https, err.as_ref()) {
        headers.set(name, &value)?;
    }
    if let Some(loc) = &r.location {
        headers.set("Location", loc)?;
    }
    for c in [&r.set_cookie, &r.extra_cookie].into_iter().flatten() {
        headers.append("Set-Cookie", c)?;
    }
    Ok(Response::from_bytes(r.body.into_bytes())?
        .with_status(r.status)
        .with_headers(headers))
}
