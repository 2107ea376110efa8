//! A raw provider refresh token (a v2 authid's, Akeeba's raw token)
//! refreshed upstream, storing nothing, behind every pass-through limit.

use std::cell::RefCell;

use crate::authid::plausible_refresh_token;
use crate::digest::sha256_hex;
use crate::error::BrokerError;
use crate::memo::Memo;
use crate::providers::canonical_id;
use crate::refresh::{self, PassThrough};
use crate::secret::RefreshToken;
use crate::shell::call::Call;
use crate::shell::clock;
use crate::shell::guard::{count_miss, rate_limit, refuse_if_spent};
use crate::shell::upstream_fetch;

/// Refreshes a raw provider refresh token (a v2 authid's, Akeeba's raw
/// token) upstream, storing nothing, behind every pass-through limit: the
/// answer carries the token to present next time (the rotated one, or the
/// same).
pub async fn pass_through(
    c: &Call,
    provider: &str,
    refresh_token: &RefreshToken,
) -> Result<PassThrough, BrokerError> {
    // Every new pass-through token is a new grant bucket and a provider call
    // with our client credentials. In order, each before any provider call:
    // obvious garbage is answered here; a token the provider refused lately
    // is answered from memory; the provider's refusal budget (everyone's);
    // the address's budget per /64 and per network (/48, IPv4 /24); then the
    // token's own (cache hits do not exist here: nothing is stored).
    if !plausible_refresh_token(refresh_token) {
        return Err(BrokerError::MalformedAuthId);
    }
    let provider = canonical_id(provider);
    let key = grant_key(provider, refresh_token);
    let now = clock::now_ms();
    if let Some(e) = REFUSED.with_borrow_mut(|m| m.recall(&key, now)) {
        return Err(e);
    }
    refuse_if_spent(PASS_THROUGH_REFUSALS, provider)?;
    rate_limit(c, "RL_V2_PER_IP", c.client_key()?).await?;
    rate_limit(c, "RL_V2_PER_48", c.network_key()?).await?;
    rate_limit(c, "RL_PER_GRANT", key.clone()).await?;
    let outcome =
        upstream_fetch::refresh(&c.cfg, provider, refresh_token, c.cfg.upstream_timeout_ms).await;
    let answer = refresh::pass_through(refresh_token, outcome, c.cfg.log_in_again());
    if let Err(e @ BrokerError::ReauthorizationRequired { .. }) = &answer {
        // The provider refused the token (`invalid_grant`): that is final, so
        // it is remembered and never asked again for a while, and it counts
        // against the provider's refusal budget. A refusal is the client's
        // token, not a failure of the broker: nothing is logged.
        REFUSED.with_borrow_mut(|m| m.remember(key, e, now, now + REFUSED_MEMO_MS));
        // The refusal is this answer either way; a budget it spent refuses
        // the next ones.
        let _spent = count_miss(c, PASS_THROUGH_REFUSALS, provider).await;
    }
    answer
}

/// Per provider, pass-through tokens the provider may refuse a minute (a
/// global budget: refused tokens are what a flood of made-up ones looks like,
/// and each refusal is a call with our client credentials). Once spent, this
/// isolate refuses that provider's pass-through refreshes (429) until the
/// window ends; stored (v1) grants are never affected.
const PASS_THROUGH_REFUSALS: &str = "RL_V2_REFUSED";

/// How long a refused pass-through token is answered from memory.
const REFUSED_MEMO_MS: u64 = 10 * 60 * 1000;

thread_local! {
    /// Pass-through tokens the provider refused lately, per isolate, by
    /// [`grant_key`] (never the token).
    static REFUSED: RefCell<Memo> = RefCell::new(Memo::new(1024));
}

/// The per-grant limit's bucket for a pass-through refresh token: a hash of
/// the provider (canonical) and the token, never the token. One key whichever
/// door presents it (a v2 authid, Akeeba's raw token).
pub(super) fn grant_key(provider: &str, refresh_token: &RefreshToken) -> String {
    sha256_hex(&format!("{provider}\n{}", refresh_token.secret()))
}
