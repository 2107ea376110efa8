//! Response shaping: one place that turns a handler's outcome into a
//! `worker::Response` with the right status, body and security headers. An
//! error is shown on the surface its route-table row names: an HTML page for a
//! browser route, JSON for an API route.

use worker::{Headers, Response};

use crate::error::BrokerError;
use crate::pages;
use crate::route::Surface;

/// What a handler produced.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub location: Option<String>,
    /// `Set-Cookie` values, in order.
    pub cookies: Vec<String>,
    /// Headers a door adds beside the usual ones (the OAuth 2.0 front
    /// door's `Pragma`, `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

/// Every handler's result.
pub type Out = Result<Reply, BrokerError>;

fn reply(status: u16, content_type: &'static str, body: String) -> Reply {
    Reply {
        status,
        content_type,
        body,
        location: None,
        cookies: Vec::new(),
        headers: Vec::new(),
    }
}

impl Reply {
    pub fn with_cookie(mut self, cookie: String) -> Reply {
        self.cookies.push(cookie);
        self
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

/// A successful answer of the OAuth 2.0 front door (RFC 6749 §5.1: JSON,
/// `no-store` as every answer, and `Pragma: no-cache`).
pub fn oauth_ok(v: serde_json::Value) -> Out {
    let mut r = reply(200, "application/json", v.to_string());
    let (name, value) = crate::oauth2::PRAGMA;
    r.headers.push((name, value.to_string()));
    Ok(r)
}

pub fn redirect(location: &str) -> Reply {
    let mut r = reply(302, "text/plain; charset=utf-8", String::new());
    r.location = Some(location.to_string());
    r
}

pub fn javascript(body: String) -> Out {
    Ok(reply(200, "application/javascript", body))
}

/// Builds the response with the headers of [`crate::headers::response_headers`];
/// `allow` is the `Allow` header of a 405.
pub fn finish(
    out: Out,
    surface: Surface,
    https: bool,
    allow: Option<String>,
) -> worker::Result<Response> {
    let (r, err) = match out {
        Ok(r) => (r, None),
        // RFC 6749 §5.2's shape, with its own status and error headers.
        Err(e) if surface == Surface::OAuth => {
            let o = crate::oauth2::error_for(&e);
            let mut r = reply(o.status, "application/json", o.body());
            r.headers = o.headers(&e);
            (r, None)
        }
        Err(e) => {
            let r = match surface {
                Surface::Api | Surface::OAuth => {
                    reply(e.status(), "application/json", e.json_body())
                }
                // Without the request (a miss before any route): no restart link.
                Surface::Page | Surface::PageOrApi => html(pages::error(&e, None)),
            };
            (r, Some(e))
        }
    };
    build(r, err.as_ref(), https, allow)
}

/// An error on a browser route shown with a page made for it (the access
/// gate's key form, or [`pages::error`] with the request's restart link),
/// with the error's headers.
pub fn finish_page(err: BrokerError, page: pages::Page, https: bool) -> worker::Result<Response> {
    build(html(page), Some(&err), https, None)
}

fn build(
    r: Reply,
    err: Option<&BrokerError>,
    https: bool,
    allow: Option<String>,
) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in crate::headers::response_headers(r.content_type, https, err) {
        headers.set(name, &value)?;
    }
    for (name, value) in [("Location", &r.location), ("Allow", &allow)] {
        if let Some(v) = value {
            headers.set(name, v)?;
        }
    }
    for (name, value) in &r.headers {
        headers.set(name, value)?;
    }
    for c in &r.cookies {
        headers.append("Set-Cookie", c)?;
    }
    Ok(Response::from_bytes(r.body.into_bytes())?
        .with_status(r.status)
        .with_headers(headers))
}
