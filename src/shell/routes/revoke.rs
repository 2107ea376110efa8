//! `GET /revoke` (a form) and `POST /revoked`: whoever holds the authid can
//! delete its grant here, which also revokes it at the provider where the
//! provider has an endpoint for that.

use crate::authid::AuthId;
use crate::error::BrokerError;
use crate::pages;
use crate::refresh::{Grants, ReadFrom};
use crate::request::{single, stored_authid};
use crate::shell::call::Call;
use crate::shell::respond::{html, Out};
use crate::shell::upstream_fetch;

pub async fn form(_: &mut Call) -> Out {
    Ok(html(pages::revoke_form()))
}

pub async fn post(c: &mut Call) -> Out {
    let form = c.form().await?;
    let authid = stored_authid(single(&form, "authid")?.unwrap_or_default())?;
    Ok(html(pages::revoked(revoke_stored(c, authid).await?)))
}

/// Deletes the stored grant of `authid` and revokes its refresh token at the
/// provider where it can; shared with the RFC 7009 endpoint (`revocation.rs`).
pub async fn revoke_stored(c: &Call, authid: AuthId) -> Result<pages::RevokeOutcome, BrokerError> {
    let vault = c.vault()?;
    let stored = vault.grant(authid)?;
    // Read and deleted on the primary: from then on no refresh of this grant
    // can happen (a replica may serve its cached access token until it has
    // replayed the delete; see `crate::refresh`).
    let opened = stored.open(ReadFrom::Primary).await?;
    stored.delete(&opened).await?;
    let outcome = match opened.grant.refresh_token() {
        Some(rt) => upstream_fetch::revoke(&c.cfg, opened.provider.as_str(), &rt).await,
        None => pages::RevokeOutcome::ProviderFailed,
    };
    Ok(outcome)
}
