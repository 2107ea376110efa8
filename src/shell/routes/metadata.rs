//! `GET /.well-known/oauth-authorization-server`: the RFC 8414 metadata that
//! names the front door's endpoints (`crate::oauth2::metadata`). Clients and
//! the tests discover every endpoint here.

use crate::oauth2;
use crate::shell::call::Call;
use crate::shell::respond::{oauth_ok, Out};

pub async fn get(c: &mut Call) -> Out {
    oauth_ok(oauth2::metadata(&c.cfg.origin, &c.base))
}
