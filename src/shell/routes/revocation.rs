//! `POST /oauth/revoke`: RFC 7009 token revocation. The token is an authid;
//! a stored (v1) one is revoked exactly like `POST /revoked` does it (the
//! shared `revoke::revoke_stored`). An unknown, malformed, already revoked
//! or pass-through (v2) token is answered 200 too (RFC 7009 §2.2): nothing is
//! left that it could be used for.

use serde_json::json;

use crate::oauth2;
use crate::request::stored_authid;
use crate::shell::call::Call;
use crate::shell::respond::{oauth_ok, Out};
use crate::shell::routes::revoke::revoke_stored;

pub async fn post(c: &mut Call) -> Out {
    let form = c.form().await?;
    let token = oauth2::revocation_token(&form)?;
    let revoked = match stored_authid(token) {
        Ok(authid) => revoke_stored(c, authid).await.map(|_| ()),
        Err(e) => Err(e),
    };
    oauth2::revocation_outcome(revoked)?;
    oauth_ok(json!({}))
}
