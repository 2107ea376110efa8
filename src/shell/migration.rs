//! The shell half of `crate::migrate`: asks the operator's oauth-handler for
//! a grant this broker does not hold yet, and keeps it under the same authid:
//! on shard 1, since oauth-handler spellings are never shard-tagged.

use crate::error::BrokerError;
use crate::ids::ProviderId;
use crate::migrate::{self, Exported, Source};
use crate::shell::call::Call;
use crate::shell::store::vault::StoredGrant;
use crate::shell::upstream_fetch;
use crate::upstream::MAX_TOKEN_RESPONSE_BYTES;

/// Moves the grant `headers` name (see [`Source::export_headers`]) from the
/// old service into `grant`'s row. `Ok(true)` when a grant is now stored
/// under this authid (moved by this call or a concurrent one), `Ok(false)`
/// when the old service does not know it either. A row already stored under
/// the keyid is never replaced: then the presented secret is simply wrong.
pub async fn adopt(
    c: &Call,
    grant: &StoredGrant,
    source: &Source,
    headers: &[(&'static str, String)],
) -> Result<bool, BrokerError> {
    if grant.exists().await? {
        return Ok(false);
    }
    let (status, body) =
        upstream_fetch::get(&source.export_url, headers, c.cfg.upstream_timeout_ms).await?;
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(BrokerError::ProviderFailed);
    }
    let (service, moved) = match migrate::read_export(status, &body)? {
        Exported::Unknown => return Ok(false),
        Exported::Grant { service, grant } => (service, grant),
    };
    let provider = c
        .cfg
        .catalogue()?
        .get(&service)
        .map(|p| ProviderId::new(&p.id))
        .ok_or(BrokerError::Misconfigured {
            what: "a grant in the oauth-handler names a provider this broker does not serve",
        })?;
    let stored = grant.insert_if_absent(&provider, &moved, c.cfg.now).await?;
    if stored {
        // Non-secret: which provider, never the authid or a token.
        worker::console_log!("moved a {} grant from the oauth-handler", provider.as_str());
    }
    Ok(true)
}
