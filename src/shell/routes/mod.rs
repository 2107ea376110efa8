//! The route table: the one place that says each route's path, methods,
//! surface (browser page or API JSON), per-IP limit, access gate and handler.
//! The router, the 405 answer, the gate, the limits and the error surface all
//! read it (the rules of reading it: `crate::route`). Adding a route is a file
//! in this folder plus one row here.

mod admin;
mod akeeba;
mod authorize;
mod callback;
mod cli_token;
mod device;
mod handoff;
mod health;
mod index;
mod login;
mod metadata;
mod privacy;
mod reauthorize;
mod refresh;
mod revocation;
mod revoke;
mod status;
mod token;

use std::future::Future;
use std::pin::Pin;

use super::call::Call;
use super::respond::Out;
use crate::oauth2::{
    AUTHORIZATION_PATH, DEVICE_AUTHORIZATION_PATH, METADATA_PATH, METADATA_PATH_INSERTED_KEY,
    REVOCATION_PATH, TOKEN_ALIAS_PATH, TOKEN_PATH,
};
use crate::route::Method::{Get, Head, Post};
use crate::route::PathPattern::{Exact, Prefix, Tail};
use crate::route::{Method, PathPattern, Route, Surface};

/// A route handler: borrows the call for as long as it runs.
pub type Handler = for<'c> fn(&'c mut Call) -> Pin<Box<dyn Future<Output = Out> + 'c>>;

const GET: &[Method] = &[Get];
const GET_HEAD: &[Method] = &[Get, Head];
const GET_POST: &[Method] = &[Get, Post];
const POST: &[Method] = &[Post];

/// A browser route: its errors are HTML pages.
const fn page(path: PathPattern, methods: &'static [Method], handler: Handler) -> Route<Handler> {
    Route {
        path,
        methods,
        surface: Surface::Page,
        ip_limited: false,
        gated: false,
        handler,
    }
}

/// An API route: its errors are JSON.
const fn api(path: PathPattern, methods: &'static [Method], handler: Handler) -> Route<Handler> {
    Route {
        surface: Surface::Api,
        ..page(path, methods, handler)
    }
}

/// A route of the standard OAuth 2.0 front door: its errors are RFC 6749
/// §5.2 JSON (`crate::oauth2::error_for`).
const fn oauth(path: PathPattern, methods: &'static [Method], handler: Handler) -> Route<Handler> {
    Route {
        surface: Surface::OAuth,
        ..page(path, methods, handler)
    }
}

/// A route that answers a page to a browser and JSON to a machine that
/// names its authid in `X-AuthID` (`crate::route::Surface::PageOrApi`).
const fn page_or_api(
    path: PathPattern,
    methods: &'static [Method],
    handler: Handler,
) -> Route<Handler> {
    Route {
        surface: Surface::PageOrApi,
        ..page(path, methods, handler)
    }
}

/// Counted against the per-IP limit: every route that writes to D1, calls a
/// provider or compares a secret.
const fn limited(route: Route<Handler>) -> Route<Handler> {
    Route {
        ip_limited: true,
        ..route
    }
}

/// Behind the operator's access gate (`ACCESS_KEYS`).
const fn gated(route: Route<Handler>) -> Route<Handler> {
    Route {
        gated: true,
        ..route
    }
}

pub static ROUTES: &[Route<Handler>] = &[
    api(Exact("/healthz"), GET_HEAD, |c| Box::pin(health::get(c))),
    // `?token=` registers a hand-off (GC + insert).
    limited(page(Exact("/"), GET_HEAD, |c| Box::pin(index::get(c)))),
    limited(api(Exact("/fetch"), GET, |c| Box::pin(handoff::fetch(c)))),
    // A D1 query per request, whatever the token.
    limited(api(Exact("/token-state"), GET, |c| {
        Box::pin(handoff::token_state(c))
    })),
    gated(limited(page(Exact("/login"), GET, |c| {
        Box::pin(login::get(c))
    }))),
    // Jottacloud's CLI-token login: the form, and its POST (a provider call,
    // a D1 write).
    gated(limited(page(Exact("/cli-token"), GET, |c| {
        Box::pin(cli_token::form(c))
    }))),
    gated(limited(page(Exact("/cli-token-login"), POST, |c| {
        Box::pin(cli_token::login(c))
    }))),
    gated(limited(api(Exact("/refresh"), GET_POST, |c| {
        Box::pin(refresh::handle(c))
    }))),
    // RFC 6749 §4.1 / RFC 8252: starts a login (a D1 write), like /login.
    gated(limited(page(Exact(AUTHORIZATION_PATH), GET, |c| {
        Box::pin(authorize::get(c))
    }))),
    // RFC 8628 §3.1: a D1 write per request; errors as RFC 6749 §5.2. It
    // reads the gate itself, like the token endpoint (below): the key may be
    // the client_secret.
    limited(oauth(Exact(DEVICE_AUTHORIZATION_PATH), POST, |c| {
        Box::pin(device::authorization(c))
    })),
    // RFC 8628 §3.3: the verification page; its code checks also count
    // against RL_USER_CODE, and its misses against RL_USER_CODE_48 and
    // RL_USER_CODE_GLOBAL (guessing user codes).
    gated(limited(page(Exact("/device"), GET_POST, |c| {
        Box::pin(device::page(c))
    }))),
    limited(page(Exact("/handoff"), POST, |c| {
        Box::pin(handoff::confirm(c))
    })),
    page(Exact("/revoke"), GET, |c| Box::pin(revoke::form(c))),
    // A grant's status for its holder (`crate::status`): a D1 read and the
    // per-grant limit. Not gated: only an authid's holder learns anything.
    limited(page_or_api(Exact("/status"), GET_POST, |c| {
        Box::pin(status::handle(c))
    })),
    // Re-authorization into the same authid (`crate::reauthorize::PATH`): its POST
    // starts a login (a D1 write). Not gated: it needs a live authid, whose
    // holder logged in here before, and changes only that authid's grant.
    limited(page(Exact("/reauthorize"), GET_POST, |c| {
        Box::pin(reauthorize::page(c))
    })),
    limited(page(Exact("/revoked"), POST, |c| Box::pin(revoke::post(c)))),
    limited(page(Exact("/admin"), GET_POST, |c| {
        Box::pin(admin::page(c))
    })),
    page(Exact("/privacy"), GET, |c| Box::pin(privacy::get(c))),
    limited(api(Exact("/admin/status"), GET, |c| {
        Box::pin(admin::status(c))
    })),
    limited(api(Exact("/export"), GET, |c| Box::pin(admin::export(c)))),
    limited(api(Exact("/import"), POST, |c| Box::pin(admin::import(c)))),
    // The standard OAuth 2.0 front door (`crate::oauth2`). The token endpoint
    // reads the gate itself (not `gated`): the key may be the client_secret,
    // which is in the body or the Authorization header. The metadata is
    // public; a key in its path (either spelling) is checked by its handler,
    // which also counts `/k/<key>/…`'s request against the per-IP limit.
    oauth(Exact(METADATA_PATH), GET_HEAD, |c| {
        Box::pin(metadata::get(c))
    }),
    // RFC 8414 §3.1: the metadata of the issuer `<origin>/k/<key>`.
    // It compares a key, so it is limited.
    limited(oauth(Prefix(METADATA_PATH_INSERTED_KEY), GET_HEAD, |c| {
        Box::pin(metadata::path_inserted(c))
    })),
    limited(oauth(Exact(TOKEN_PATH), POST, |c| Box::pin(token::post(c)))),
    limited(oauth(Exact(TOKEN_ALIAS_PATH), POST, |c| {
        Box::pin(token::post(c))
    })),
    limited(oauth(Exact(REVOCATION_PATH), POST, |c| {
        Box::pin(revocation::post(c))
    })),
    // Akeeba Backup's "Custom" OAuth2 helper (`akeeba.rs`): the Helper URL
    // starts a login (a D1 write); the Refresh URL is a Tail row, as Box's
    // connector doubles the URL into the request target.
    gated(limited(page(Prefix("/akeeba/"), GET, |c| {
        Box::pin(akeeba::helper(c))
    }))),
    gated(limited(api(Tail("/akeeba/"), GET, |c| {
        Box::pin(akeeba::refresh(c))
    }))),
    // Consumes the login state (`DELETE … RETURNING`), then exchanges the code.
    limited(page(Prefix("/callback/"), GET, |c| {
        Box::pin(callback::get(c))
    })),
];
