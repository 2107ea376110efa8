//! `GET /.well-known/oauth-authorization-server`: the RFC 8414 metadata that
//! names the front door's endpoints (`crate::oauth2::metadata`). Clients and
//! the tests discover every endpoint here.
//!
//! Behind the access gate a client's issuer is `<origin>/k/<key>`, and its
//! metadata has two spellings that answer alike: RFC 8414 §3.1's, the
//! well-known string inserted before the issuer's path
//! (`/.well-known/oauth-authorization-server/k/<key>`), and the key prefix in
//! front of the route (`/k/<key>/.well-known/oauth-authorization-server`).
//! The key in either is part of the issuer, so it must be one of the keys.

use crate::access;
use crate::error::BrokerError;
use crate::oauth2;
use crate::shell::call::Call;
use crate::shell::guard::{rate_limit, PER_IP_LIMIT};
use crate::shell::respond::{oauth_ok, Out};

pub async fn get(c: &mut Call) -> Out {
    if c.path_key.is_some() {
        // A key is compared: counted like every route that compares a secret
        // (the path-inserted row is `limited` in the table).
        rate_limit(c, PER_IP_LIMIT, c.client_key()?).await?;
    }
    answer(c)
}

/// `GET /.well-known/oauth-authorization-server/k/<key>` (RFC 8414 §3.1): the
/// metadata of the issuer `<origin>/k/<key>`, as [`get`] answers it under
/// that prefix. Not a location of any issuer (a 404 like `/k//…`): an empty
/// or undecodable key, or a second key prefix in front.
pub async fn path_inserted(c: &mut Call) -> Out {
    if !c.base.is_empty() {
        return Err(BrokerError::NotFound);
    }
    let key = access::key_segment(&c.rest).ok_or(BrokerError::NotFound)?;
    c.base = format!("/k/{}", c.rest);
    c.path_key = Some(key);
    answer(c)
}

/// The metadata at `c.base`, once the key in it (if any) passed the gate: a
/// wrong one gets the gate's answer on the front door (401 `invalid_client`).
fn answer(c: &Call) -> Out {
    if let Some(key) = c.path_key.as_deref() {
        if !c.cfg.gate_allows(Some(key)) {
            return Err(access::KEY_REQUIRED);
        }
    }
    oauth_ok(oauth2::metadata(&c.cfg.origin, &c.base))
}
