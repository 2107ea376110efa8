//! `POST /oauth/revoke`: RFC 7009 token revocation. The token is an authid,
//! revoked by the token service (`tokens::revoke_authid`) exactly as
//! `POST /revoked` does it: a stored (v1) grant is deleted and revoked at the
//! provider; a pass-through (v2) one is revoked at the provider, and where the
//! provider has no revocation endpoint the answer is §2.2.1
//! `unsupported_token_type` (it would keep working: a 200 would lie). An
//! unknown, malformed or already revoked token is answered 200 (§2.2).

use serde_json::json;

use crate::error::BrokerError;
use crate::oauth2;
use crate::pages::RevokeOutcome;
use crate::shell::call::Call;
use crate::shell::respond::{oauth_ok, Out};
use crate::shell::tokens;

pub async fn post(c: &mut Call) -> Out {
    let form = c.form().await?;
    let token = oauth2::revocation_token(&form)?;
    let revoked = tokens::revoke_authid(c, token).await;
    match revoked {
        Ok(r) if !r.deleted => match r.provider {
            RevokeOutcome::ProviderRevoked => {}
            RevokeOutcome::NoProviderEndpoint => {
                return Err(BrokerError::BadRequest {
                    code: "unsupported_token_type",
                    what: "this provider cannot revoke a pass-through (v2) token; \
                           remove the app's access in the provider's account settings",
                })
            }
            RevokeOutcome::ProviderFailed => return Err(BrokerError::ProviderFailed),
        },
        other => oauth2::revocation_outcome(other.map(|_| ()))?,
    }
    oauth_ok(json!({}))
}
