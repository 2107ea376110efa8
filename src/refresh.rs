//! The refresh state machine: what a `/refresh` does with the grant row it read.
//!
//! Providers such as Box issue single-use refresh tokens: presenting a spent one
//! kills the grant for good. So at most one upstream refresh per grant may be in
//! flight, across every isolate. The shell coordinates through D1 (the one
//! strongly consistent store a Worker has):
//!
//! 1. Read the row. Serve a cached access token if more than 60 s remain.
//! 2. Otherwise claim the row's lease with a conditional UPDATE (`lease_until <
//!    now AND version = <read version>`), checked through `meta.changes`.
//! 3. The winner refreshes upstream (bounded by [`UPSTREAM_TIMEOUT_MS`], shorter
//!    than the lease), writes the re-sealed grant with compare-and-swap on
//!    `(lease_id, version)`, clearing the lease, and only then answers.
//! 4. Losers poll the row until its version moves (then serve the winner's
//!    token), the lease is released without a write (then try to claim), or
//!    [`WAIT_BUDGET_MS`] is spent (then a retryable 504; never a spent refresh
//!    token upstream, never an overwrite of a newer grant).
//!
//! A crashed winner's lease simply expires after [`LEASE_SECS`].

use crate::grant::Grant;
use crate::secret::AccessToken;

/// How long a claimed lease holds. Longer than the upstream timeout plus the
/// D1 write, so a live winner never loses its lease mid-refresh.
pub const LEASE_SECS: i64 = 25;

/// Upper bound on one upstream token call.
pub const UPSTREAM_TIMEOUT_MS: u64 = 15_000;

/// The upstream timeout from the optional `UPSTREAM_TIMEOUT_MS` variable: it
/// can only be lowered (1 s minimum), so the lease invariant always holds.
pub fn upstream_timeout_ms(var: Option<&str>) -> u64 {
    var.and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(UPSTREAM_TIMEOUT_MS, |v| v.clamp(1_000, UPSTREAM_TIMEOUT_MS))
}

/// How long a request waits for another request's refresh. Below Duplicati's
/// 25 s client timeout, so the client sees our answer, not its own timeout.
pub const WAIT_BUDGET_MS: u64 = 20_000;

/// Pause between polls while waiting for a winner.
pub const POLL_MS: u64 = 150;

// The timing invariants, checked at compile time: the lease outlives an upstream
// call plus the write; waiting ends before Duplicati's 25 s client timeout.
const _: () = assert!(LEASE_SECS * 1000 > UPSTREAM_TIMEOUT_MS as i64 + 5_000);
const _: () = assert!(WAIT_BUDGET_MS < 25_000 && POLL_MS * 10 < WAIT_BUDGET_MS);

/// Non-secret row status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    /// The provider answered `invalid_grant`: answer at once, never go upstream
    /// again for this grant (until the user revokes or logs in again).
    ReauthRequired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::ReauthRequired => "reauth_required",
        }
    }

    /// Unknown values fail safe: treated as needing re-authorization.
    pub fn parse(s: &str) -> Status {
        match s {
            "active" => Status::Active,
            _ => Status::ReauthRequired,
        }
    }
}

/// What to do next with a row just read.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Answer with this access token and its remaining seconds.
    Serve(AccessToken, i64),
    /// Answer 503: the user must re-authorize.
    Reauthorize,
    /// Nobody holds the lease: try to claim it and refresh upstream.
    Claim,
    /// Another request holds the lease: wait and read again.
    Wait,
}

/// Decides the next step for a row with `status`, opened `grant`, and lease
/// expiry `lease_until`, at `now` (unix seconds).
pub fn next(status: Status, grant: &Grant, lease_until: i64, now: i64) -> Next {
    if status == Status::ReauthRequired {
        return Next::Reauthorize;
    }
    if let Some((token, remaining)) = grant.cached_access_token(now) {
        return Next::Serve(token, remaining);
    }
    if lease_until > now {
        Next::Wait
    } else {
        Next::Claim
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::TokenResponse;

    fn grant(expires_in: i64, now: i64) -> Grant {
        let json =
            format!(r#"{{"access_token":"AT","refresh_token":"RT","expires_in":{expires_in}}}"#);
        Grant::from_code_exchange(TokenResponse::parse(json.as_bytes()).unwrap(), now).unwrap()
    }

    #[test]
    fn a_valid_cached_token_is_served_even_while_someone_holds_the_lease() {
        let g = grant(3600, 0);
        assert!(matches!(
            next(Status::Active, &g, 100, 10),
            Next::Serve(_, 3590)
        ));
    }

    #[test]
    fn an_expired_token_is_refreshed_only_by_the_lease_holder() {
        let g = grant(30, 0);
        assert_eq!(next(Status::Active, &g, 0, 10), Next::Claim);
        assert_eq!(next(Status::Active, &g, 11, 10), Next::Wait);
        assert_eq!(
            next(Status::Active, &g, 10, 10),
            Next::Claim,
            "an expired lease (crashed winner) can be claimed"
        );
    }

    #[test]
    fn the_upstream_timeout_can_only_be_lowered() {
        assert_eq!(upstream_timeout_ms(None), UPSTREAM_TIMEOUT_MS);
        assert_eq!(upstream_timeout_ms(Some("3000")), 3000);
        assert_eq!(upstream_timeout_ms(Some("10")), 1000);
        assert_eq!(upstream_timeout_ms(Some("999999")), UPSTREAM_TIMEOUT_MS);
        assert_eq!(upstream_timeout_ms(Some("x")), UPSTREAM_TIMEOUT_MS);
    }

    #[test]
    fn a_grant_marked_for_reauthorization_never_goes_upstream() {
        let g = grant(30, 0);
        assert_eq!(next(Status::ReauthRequired, &g, 0, 10), Next::Reauthorize);
        assert_eq!(next(Status::parse("garbage"), &g, 0, 10), Next::Reauthorize);
        assert_eq!(Status::parse(Status::Active.as_str()), Status::Active);
    }
}
