//! A grant's life for its holder: its status (`crate::status`), and
//! re-authorization into the same authid (`crate::reauthorize`). Both are
//! answered only to the authid's holder (the grant is opened with it first)
//! and count against the per-grant limit like a refresh.

use crate::authid::{parse_authid, AuthId, ParsedAuthId};
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::providers::{canonical_id, Provider, Revocation};
use crate::reauthorize::{self, Refusal};
use crate::refresh::{Grants, ReadFrom};
use crate::shell::call::Call;
use crate::shell::guard::rate_limit;
use crate::shell::upstream_fetch;
use crate::status::View;
use crate::storage::{GrantStore as _, GrantVault as _};
use crate::upstream::TokenResponse;

/// What `/status` says about an authid.
pub enum StatusAnswer {
    Stored(View),
    /// A pass-through (v2) authid of this provider: nothing is stored.
    PassThrough {
        provider: String,
        name: Option<String>,
    },
    /// Replaced by its successor, which has been used (Akeeba's refresh URL).
    Replaced,
}

/// The status of the authid `raw`, for its holder.
pub async fn status(c: &Call, raw: &str) -> Result<StatusAnswer, BrokerError> {
    match parse_authid(raw.trim())? {
        ParsedAuthId::V2 {
            provider,
            refresh_token,
        } => {
            let provider = canonical_id(&provider).to_string();
            let key = super::pass_through::grant_key(&provider, &refresh_token);
            rate_limit(c, "RL_PER_GRANT", key).await?;
            let name = c.cfg.catalogue()?.get(&provider).map(|p| p.name.clone());
            Ok(StatusAnswer::PassThrough { provider, name })
        }
        ParsedAuthId::V1(authid) => {
            let grant = c.vault()?.grant(authid)?;
            rate_limit(c, "RL_PER_GRANT", grant.limit_key()).await?;
            let (facts, opened) = match grant.facts().await {
                Err(BrokerError::AuthIdReplaced) => return Ok(StatusAnswer::Replaced),
                other => other?,
            };
            let offered = c.cfg.provider(&facts.provider).ok().map(|(p, _)| p);
            let provider_name = match offered {
                Some(p) => p.name.clone(),
                None => c
                    .cfg
                    .catalogue()?
                    .get(&facts.provider)
                    .map_or_else(|| facts.provider.clone(), |p| p.name.clone()),
            };
            let reauthorize = match offered {
                Some(p) => reauthorize::check(p, &opened.grant),
                None => Err(Refusal::NotOffered),
            };
            Ok(StatusAnswer::Stored(View {
                provider: facts.provider.clone(),
                provider_name,
                facts,
                reauthorize,
            }))
        }
    }
}

/// The provider to log in at to re-authorize the grant under `authid` in
/// place, if it may be (before anything is stored or anyone is sent away).
pub async fn reauthorizable(c: &Call, authid: AuthId) -> Result<&Provider, BrokerError> {
    let grant = c.vault()?.grant(authid)?;
    rate_limit(c, "RL_PER_GRANT", grant.limit_key()).await?;
    let (facts, opened) = grant.facts().await?;
    let provider = c
        .cfg
        .provider(&facts.provider)
        .map_err(|_| Refusal::NotOffered)?
        .0;
    reauthorize::check(provider, &opened.grant)?;
    Ok(provider)
}

/// The end of a re-authorization login at `provider` (its code exchange
/// answered `resp`): the grant under `authid` becomes the new login's, if it
/// is the same account (compare-and-swap on the version, retried while a
/// refresh keeps writing the row). A login of another account changes
/// nothing; its new grant is revoked at the provider where that ends only it.
pub async fn reauthorize(
    c: &Call,
    authid: AuthId,
    provider: &Provider,
    resp: TokenResponse,
) -> Result<(), BrokerError> {
    let account = super::account::account_id(c, provider, &resp).await;
    let fresh = Grant::from_code_exchange(resp, c.cfg.now)?;
    let keys = c.cfg.keys()?;
    let grant = c.vault()?.grant(authid)?;
    for _ in 0..3 {
        let read = grant.open(ReadFrom::Primary).await?;
        if canonical_id(read.provider.as_str()) != provider.id {
            return Err(BrokerError::InvalidLoginState);
        }
        let next = match reauthorize::reauthorized(
            keys,
            provider,
            &read.grant,
            account.as_deref(),
            fresh.clone(),
        ) {
            Ok(next) => next,
            Err(refusal) => {
                discard(c, provider, &fresh).await;
                return Err(refusal.into());
            }
        };
        if grant.reauthorize(&read, &next, c.cfg.now).await? {
            return Ok(());
        }
    }
    // The row kept changing under three attempts (refreshes in a row): the
    // login's grant is not stored; logging in again is safe.
    Err(BrokerError::RefreshPending)
}

/// Revokes a refused login's new grant at the provider, where that ends only
/// this grant (not Google's, which would end every grant of that user).
async fn discard(c: &Call, provider: &Provider, fresh: &Grant) {
    if provider.revocation != Revocation::ThisGrant {
        return;
    }
    if let Some(rt) = fresh.refresh_token() {
        let _ = upstream_fetch::revoke(&c.cfg, &provider.id, &rt).await;
    }
}
