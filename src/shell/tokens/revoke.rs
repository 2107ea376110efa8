//! Revoking a grant: by its holder (`/revoked`, RFC 7009 `/oauth/revoke`), or
//! by the broker itself when the code that carried it was replayed. What the
//! provider's revocation ends decides whether the broker calls it
//! (`crate::providers::Revocation`).

use crate::authid::{parse_authid, plausible_refresh_token, AuthId, ParsedAuthId};
use crate::error::BrokerError;
use crate::pages::RevokeOutcome;
use crate::providers::{canonical_id, Revocation};
use crate::refresh::{Grants, ReadFrom};
use crate::shell::call::Call;
use crate::shell::guard::rate_limit;
use crate::shell::handler_move;
use crate::shell::upstream_fetch;
use crate::storage::{GrantStore as _, GrantVault as _};

/// Who revokes a grant, which decides whether the provider is called too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoker {
    /// The authid's holder (`/revoked`, RFC 7009 `/oauth/revoke`): the grant
    /// is deleted and revoked at the provider where it has an endpoint.
    Holder,
    /// The broker itself, because the authorization code that carried the
    /// authid was replayed (RFC 6749 §4.1.2): the grant is deleted; the
    /// provider is called only where its revocation ends this grant alone
    /// ([`Revocation::ThisGrant`]), never where it would end every other
    /// grant the user gave the broker (Google).
    Replay,
}

/// Deletes the stored grant of `authid` and revokes its refresh token at the
/// provider as `by` allows.
///
/// An oauth-handler authid this broker does not hold yet is moved in first,
/// when a move source is configured, and then revoked: else the grant would
/// move on its next refresh as if never revoked.
pub async fn revoke(c: &Call, authid: AuthId, by: Revoker) -> Result<RevokeOutcome, BrokerError> {
    let source = handler_move::source(c, &authid)?;
    let keep_tombstone = crate::handler_move::may_move(&authid);
    let vault = c.vault()?;
    let stored = vault.grant(authid)?;
    // Read and deleted on the primary: from then on no refresh of this grant
    // can happen (a replica may serve its cached access token until it has
    // replayed the delete; see `crate::refresh`).
    let opened = match stored.open(ReadFrom::Primary).await {
        Err(BrokerError::UnknownAuthId) if handler_move::moved_in(c, &stored, &source).await? => {
            stored.open(ReadFrom::Primary).await?
        }
        other => other?,
    };
    let provider = opened.provider.as_str();
    let per_grant = c
        .cfg
        .provider(provider)
        .is_ok_and(|(p, _)| p.revocation == Revocation::ThisGrant);
    // The provider first, then the row: should the row's delete fail, the
    // provider has revoked the token all the same and a retry finds the row;
    // a delete committed with its answer lost is read back as done.
    let outcome = match (by, per_grant, opened.grant.refresh_token()) {
        (Revoker::Replay, false, _) => RevokeOutcome::NoProviderEndpoint,
        (_, _, Some(rt)) => upstream_fetch::revoke(&c.cfg, provider, &rt).await,
        (_, _, None) => RevokeOutcome::ProviderFailed,
    };
    stored.revoke(&opened, keep_tombstone).await?;
    Ok(outcome)
}

/// What revoking an authid did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Whether a stored grant was deleted (false for a pass-through (v2)
    /// authid: the provider's revocation is all there is).
    pub deleted: bool,
    pub provider: RevokeOutcome,
}

/// Revokes the authid `raw` for its holder: a stored (v1) grant is deleted
/// and revoked at the provider ([`revoke`]); a pass-through (v2) one, which
/// the broker never stored, is revoked at the provider, or nothing happens
/// where the provider has no revocation endpoint (the caller says so).
pub async fn revoke_authid(c: &Call, raw: &str) -> Result<Revoked, BrokerError> {
    // Surrounding whitespace (a careless paste into the form) is ignored.
    match parse_authid(raw.trim())? {
        ParsedAuthId::V1(authid) => Ok(Revoked {
            deleted: true,
            provider: revoke(c, authid, Revoker::Holder).await?,
        }),
        ParsedAuthId::V2 {
            provider,
            refresh_token,
        } => {
            // The provider call spends the address's pass-through budget,
            // like a v2 refresh: it is a call with our client credentials.
            if !plausible_refresh_token(&refresh_token) {
                return Err(BrokerError::MalformedAuthId);
            }
            rate_limit(c, "RL_V2_PER_IP", c.client_key()?).await?;
            let provider = canonical_id(&provider);
            // A provider this broker does not offer cannot be asked.
            let outcome = match c.cfg.provider(provider) {
                Ok(_) => upstream_fetch::revoke(&c.cfg, provider, &refresh_token).await,
                Err(_) => RevokeOutcome::NoProviderEndpoint,
            };
            Ok(Revoked {
                deleted: false,
                provider: outcome,
            })
        }
    }
}
