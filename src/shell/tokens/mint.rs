//! A new grant from a login's code exchange (or Jottacloud's CLI-token
//! password grant): a stored (v1) authid on a random shard, a pass-through
//! (v2) authid that stores nothing, or, for pCloud, the access token itself.

use crate::authid::{next_v2_authid, AuthId};
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::ids::ProviderId;
use crate::providers::Provider;
use crate::shell::call::Call;
use crate::storage::{GrantStore as _, GrantVault as _};
use crate::upstream::TokenResponse;

/// What the result page shows for a completed code exchange: a new stored (v1)
/// authid, a pass-through (v2) authid, or, for pCloud, the access token itself.
pub async fn mint(
    c: &Call,
    provider: &Provider,
    token_version: u8,
    resp: TokenResponse,
) -> Result<String, BrokerError> {
    if provider.access_token_is_authid {
        // pCloud: the token never expires and there is no refresh token; Duplicati
        // uses the access token itself as the authid. Nothing is stored.
        return Ok(resp.access_token().to_string());
    }
    let mut grant = Grant::from_code_exchange(resp.clone(), c.cfg.now)?;
    if token_version == 2 {
        // Stateless (Akeeba-style): the authid carries the refresh token; nothing
        // is stored. A token too long to be presented again as an authid is kept
        // here instead (a stored v1 authid), so the login still yields one that works.
        let rt = grant
            .refresh_token()
            .ok_or_else(|| BrokerError::internal("a new grant without a refresh token"))?;
        if let Some(authid) = next_v2_authid(&provider.id, &rt) {
            return Ok(authid);
        }
    }
    // The account it was made with, hashed, so that the same authid can be
    // re-authorized by a login of the same account (`crate::reauthorize`).
    if let Some(id) = super::account::account_id(c, provider, &resp).await {
        grant.account = Some(c.cfg.keys()?.account_hash(&provider.id, &id));
    }
    // On a shard drawn at random; the authid names it (`crate::authid`).
    let authid = AuthId::generate(c.cfg.shard_for_new_grant()?)?;
    let shown = authid.expose();
    c.vault()?
        .grant(authid)?
        .insert(&ProviderId::new(&provider.id), &grant, c.cfg.now)
        .await?;
    Ok(shown)
}
