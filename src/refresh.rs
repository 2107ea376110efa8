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
//! 3. The winner — only if the client can still wait for it ([`WaitBudget`]) —
//!    hands "refresh upstream, then persist" to work that survives the client
//!    ([`Detach`], `ctx.wait_until`): it waits for the provider up to
//!    [`UPSTREAM_PATIENCE_MS`] (the client only [`UPSTREAM_TIMEOUT_MS`]), writes
//!    the re-sealed grant with compare-and-swap on `version`, clearing the
//!    lease, and only then answers.
//! 4. Losers poll the row until its version moves (then serve the winner's
//!    token), the lease is released without a write (then try to claim), or
//!    [`WAIT_BUDGET_MS`] is spent (then a retryable 504; never a spent refresh
//!    token upstream, never an overwrite of a newer grant).
//!
//! A crashed winner's lease simply expires after [`LEASE_SECS`].
//!
//! **Read replicas** (D1's Sessions API). The first read of a refresh may go to
//! the nearest replica ([`FIRST_READ`]); every other read, the claim, the
//! writes and the waiting run on the primary. [`trust`] decides whether a
//! read may be acted on: from a replica, a cache hit (an access token with
//! more than 60 s left, [`Next::Serve`]) is served, and an expiring token
//! nobody holds a lease on ([`Next::Claim`]) is claimed on the primary with
//! the version the replica read; anything else (no row, a lease,
//! `reauth_required`) is read again on the primary before anything is
//! decided, and so is a claim that lost. A cache miss thus costs two primary
//! statements (claim, write), not three. What that guarantees:
//!
//! - *No lost grant, no spent-token reuse.* A replica read never presents a
//!   refresh token upstream on its own word and never writes: the claim it
//!   leads to is a compare-and-swap on the primary (`version`, `lease_until`,
//!   `status`), and a version names one grant (every write bumps it; a row
//!   starts at a random one, [`first_version`]), so the claim wins only if the
//!   primary still holds the very grant the replica showed, active and with
//!   no lease. A stale row loses it and is read again on the primary; the
//!   write is a compare-and-swap too. A replica lagging behind a rotation
//!   serves the previous access token only while that token itself has > 60 s
//!   left, which is a token the provider issued and still honours.
//! - *Unknown authid.* A grant just stored (a login seconds ago) may not have
//!   reached the replica: "no row" on a replica is re-read on the primary
//!   before anyone is told the authid is unknown (or a handler move starts).
//! - *Revoke.* A revoke reads and deletes on the primary. From the moment the
//!   primary has the delete, no refresh of that grant can start anywhere (the
//!   refresh path only refreshes after winning a claim on the primary, which
//!   needs the row). A replica that has not
//!   replayed the delete yet may still serve the revoked grant's *cached access
//!   token* (never a refreshed one) for as long as it lags: bounded by D1's
//!   replica lag (Cloudflare documents no fixed figure; see docs/scale.md),
//!   and never past that token's own expiry. The access token itself stays
//!   valid at the provider until it expires anyway, unless the provider
//!   revokes it together with the refresh token.
//! - *Primary means primary.* The shell runs every primary statement outside
//!   any session, which D1 always sends to the primary: a `first-primary`
//!   session would pin only its first statement and could answer a waiter's
//!   later polls from a replica, reopening the window a stale read could fall
//!   into between a read and a claim.
//!
//! The whole protocol is here: the decisions ([`next`], [`settle`],
//! [`pass_through`], [`WaitBudget`]) and the loop that applies them
//! ([`single_flight`]), written against two small I/O traits ([`Grants`] for
//! one authid's row, [`Runtime`] for the clock, sleeping and the provider). The
//! shell implements them over D1 and `fetch` (`src/shell/store/vault.rs`,
//! `src/shell/routes/refresh.rs`); the tests here implement them in memory, so
//! every branch runs natively, and `tests/sim/` runs [`single_flight`] itself
//! under a seeded simulator (D1 with a lagging replica, a rotating provider,
//! faults, hang-ups, isolate deaths) against the guarantees listed above.

use crate::error::BrokerError;
use crate::grant::{Grant, DEFAULT_EXPIRES_IN};
use crate::ids::{KeyHash, LeaseId, ProviderId};
use crate::secret::{AccessToken, RefreshToken};
use crate::upstream::{self, Failure, Upstream};

/// The client's whole budget for one token call: Duplicati gives up after 25 s
/// (duplicati/duplicati, Duplicati/Library/Backend/OAuthHelper/OAuthHelperHttpClient.cs:
/// `AUTHENTICATION_TIMEOUT = TimeSpan.FromSeconds(25)`). Every answer must come before.
pub const CLIENT_BUDGET_MS: u64 = 25_000;

/// Upper bound on how long a client waits for one upstream token call before
/// it is answered `provider_timeout` (504, retryable).
pub const UPSTREAM_TIMEOUT_MS: u64 = 15_000;

/// How long the broker itself keeps waiting for the provider's real answer to
/// a refresh it started, after the client stopped waiting (the work runs under
/// `ctx.wait_until`). A provider that answers late may already have rotated a
/// single-use refresh token: its answer is the only copy of the new one.
/// Cloudflare lets `wait_until` work run up to 30 s past the response.
pub const UPSTREAM_PATIENCE_MS: u64 = 25_000;

/// Time kept for persisting after the provider answered: the D1 write and its
/// retries ([`WRITE_ATTEMPTS`]).
pub const WRITE_ALLOWANCE_MS: u64 = 10_000;

/// How often a failed write of a refreshed grant is tried (a D1 hiccup must
/// not lose a rotated refresh token), and the pause before the second try
/// (doubling each time).
pub const WRITE_ATTEMPTS: u32 = 3;
pub const WRITE_RETRY_MS: u64 = 500;

/// How long a claimed lease holds: longer than the broker's patience with the
/// provider plus the write, so nobody else can present the same refresh token
/// while an answer that may rotate it is still coming.
pub const LEASE_SECS: i64 = 40;

/// The version a newly stored row starts at: random in `1..=2^52` (exact as
/// the f64 D1 binds numbers as). Claims and writes compare-and-swap on the
/// version; if a re-inserted row (revoked, then imported or moved again under
/// the same authid) restarted at 1, a request that read the deleted row could
/// still win the claim on the new one and present the old grant's refresh
/// token. A random start makes that a 2^-52 coincidence.
pub fn first_version() -> Result<i64, crate::random::RandomError> {
    let mut b = [0u8; 8];
    crate::random::fill(&mut b)?;
    Ok(((u64::from_le_bytes(b) & ((1 << 52) - 1)) + 1) as i64)
}

/// The client-facing upstream timeout from the optional `UPSTREAM_TIMEOUT_MS`
/// variable: it can only be lowered (1 s minimum).
pub fn upstream_timeout_ms(var: Option<&str>) -> u64 {
    clamp_ms(var, 1_000, UPSTREAM_TIMEOUT_MS)
}

/// The broker's patience from the optional `UPSTREAM_PATIENCE_MS` variable:
/// never below the client-facing timeout, never above [`UPSTREAM_PATIENCE_MS`]
/// (the lease invariant).
pub fn upstream_patience_ms(var: Option<&str>, upstream_timeout_ms: u64) -> u64 {
    clamp_ms(var, upstream_timeout_ms, UPSTREAM_PATIENCE_MS)
}

fn clamp_ms(var: Option<&str>, min: u64, max: u64) -> u64 {
    var.and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(max, |v| v.clamp(min, max))
}

/// How long a request waits for another request's refresh. Below the client's
/// budget, so the client sees our answer, not its own timeout.
pub const WAIT_BUDGET_MS: u64 = 20_000;

/// Pause between polls while waiting for a winner.
pub const POLL_MS: u64 = 150;

/// Kept free at the end of the client's budget for the answer itself.
pub const ANSWER_MARGIN_MS: u64 = 2_000;

/// How long a client waits for the write after the provider answered in time.
pub const PERSIST_WAIT_MS: u64 = 1_500;

// The timing invariants, checked at compile time: the lease outlives the
// broker's patience plus the write; waiting ends inside the client's budget;
// the detached work fits Cloudflare's 30 s wait_until allowance past the
// client's own timeout.
const _: () = assert!(LEASE_SECS * 1000 > (UPSTREAM_PATIENCE_MS + WRITE_ALLOWANCE_MS) as i64);
const _: () = assert!(WAIT_BUDGET_MS + POLL_MS + ANSWER_MARGIN_MS < CLIENT_BUDGET_MS);
const _: () = assert!(POLL_MS * 10 < WAIT_BUDGET_MS && UPSTREAM_TIMEOUT_MS <= UPSTREAM_PATIENCE_MS);
const _: () = assert!(UPSTREAM_TIMEOUT_MS + PERSIST_WAIT_MS + ANSWER_MARGIN_MS < CLIENT_BUDGET_MS);
const _: () = assert!(WRITE_RETRY_MS * (1 << WRITE_ATTEMPTS) < WRITE_ALLOWANCE_MS);
const _: () = assert!(UPSTREAM_PATIENCE_MS + WRITE_ALLOWANCE_MS < CLIENT_BUDGET_MS + 30_000);

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

/// Where a read of the grant row goes: D1's nearest read replica (a
/// `first-unconstrained` session) or the primary (no session: D1 runs every
/// statement outside a session on the primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Replica,
    Primary,
}

/// The first read of every refresh: the nearest replica (a cache hit, the
/// common case, never reaches the primary).
pub const FIRST_READ: ReadFrom = ReadFrom::Replica;

/// Whether a read may be acted on, or must be read again on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Act,
    ReadPrimary,
}

/// Decides what a read from `from` may lead to: `read` is the decision
/// ([`next`]) on the row it found, or `None` when it found no row. A primary
/// read is always acted on; a replica read when it serves a cached token, or
/// when it leads to a claim, which the primary checks against the version
/// read (the module doc says why that is safe and why nothing else is).
pub fn trust(from: ReadFrom, read: Option<&Next>) -> Trust {
    match (from, read) {
        (ReadFrom::Primary, _) => Trust::Act,
        (ReadFrom::Replica, Some(Next::Serve(..) | Next::Claim)) => Trust::Act,
        (ReadFrom::Replica, Some(Next::Wait | Next::Reauthorize) | None) => Trust::ReadPrimary,
    }
}

/// A stored grant as read and opened: the grant plus the row state the
/// protocol decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub provider: ProviderId,
    pub status: Status,
    /// Unix seconds until which some request holds the refresh lease.
    pub lease_until: i64,
    pub grant: Grant,
    /// The row's key and the write counter read with it (compare-and-swap).
    pub key_hash: KeyHash,
    pub version: i64,
}

/// One authid's stored grant, as the protocol needs it. Implemented by the
/// shell's vault over D1; every method is one statement. `Clone + 'static`
/// (see [`single_flight`]) because the refresh it starts must be able to
/// outlive the request.
// Workers run one request per isolate thread: these futures are never sent
// across threads, so the traits deliberately promise no `Send`.
#[allow(async_fn_in_trait)]
pub trait Grants {
    /// Reads and opens the row, on a replica or on the primary.
    async fn open(&self, from: ReadFrom) -> Result<Opened, BrokerError>;
    /// Claims the lease if nobody holds an unexpired one and the row is still
    /// the one `read` (same version); `None` if another request won.
    async fn claim(&self, read: &Opened, now: i64) -> Result<Option<LeaseId>, BrokerError>;
    /// Writes `grant`, marks the row active and clears the lease,
    /// compare-and-swap on `read.version` alone: a result the provider already
    /// issued is kept even if the lease ran out meanwhile, as long as nobody
    /// wrote the row since it was read. False if the swap failed.
    async fn write(
        &self,
        read: &Opened,
        lease: &LeaseId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError>;
    /// Releases `lease` (if still held) without writing the grant, leaving
    /// `status` and recording the failed refresh's `outcome` ([`upstream::outcome`]).
    async fn release(
        &self,
        read: &Opened,
        lease: &LeaseId,
        status: Status,
        outcome: &'static str,
        now: i64,
    ) -> Result<(), BrokerError>;
}

/// The world outside the row: the clock, waiting, the provider, the log.
#[allow(async_fn_in_trait)]
pub trait Runtime {
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
    async fn sleep(&self, ms: u64);
    /// How long a client waits for one upstream call ([`upstream_timeout_ms`]).
    fn upstream_timeout_ms(&self) -> u64;
    /// One `refresh_token` grant at `provider`, classified (or why there was
    /// none), waiting up to the broker's patience ([`upstream_patience_ms`]).
    async fn refresh_upstream(
        &self,
        provider: &ProviderId,
        refresh_token: &RefreshToken,
    ) -> Result<Upstream, BrokerError>;
    /// A non-secret warning for the operator's log.
    fn warn(&self, message: &str);
}

/// Work that must finish whatever the client does. On Workers, a request whose
/// client disconnects is cancelled, and with it everything it awaits; work
/// handed to `ctx.wait_until` runs on.
#[allow(async_fn_in_trait)]
pub trait Detach {
    /// Runs `work` to its end regardless of the client and waits up to
    /// `wait_ms` for its result: `None` if it is still running by then (it
    /// keeps running).
    async fn finish<T: 'static>(
        &self,
        work: impl std::future::Future<Output = T> + 'static,
        wait_ms: u64,
    ) -> Option<T>;
}

/// What a refresh of a stored grant answers.
#[derive(Debug, PartialEq)]
pub struct Served {
    pub token: AccessToken,
    /// Seconds the token remains valid.
    pub remaining: i64,
    pub provider: ProviderId,
}

/// The single-flight refresh of one stored grant: serve from cache, or win
/// the lease and refresh upstream (detached, so that a client hanging up
/// cannot cancel a refresh the provider may already have answered), or wait
/// for the request that won it. `reauthorize` is the error telling the user to
/// log in again.
pub async fn single_flight<G, R>(
    grants: &G,
    runtime: &R,
    detach: &impl Detach,
    reauthorize: &BrokerError,
) -> Result<Served, BrokerError>
where
    G: Grants + Clone + 'static,
    R: Runtime + Clone + 'static,
{
    let budget = WaitBudget::starting(runtime.now_ms());
    let mut from = FIRST_READ;
    loop {
        let read = match grants.open(from).await {
            Err(BrokerError::UnknownAuthId) if trust(from, None) == Trust::ReadPrimary => {
                from = ReadFrom::Primary;
                continue;
            }
            read => read?,
        };
        let now = unix_secs(runtime.now_ms());
        let decided = next(read.status, &read.grant, read.lease_until, now);
        if trust(from, Some(&decided)) == Trust::ReadPrimary {
            from = ReadFrom::Primary;
            continue;
        }
        // Every later read (after a lost claim, while waiting) is on the primary.
        let read_from = std::mem::replace(&mut from, ReadFrom::Primary);
        match decided {
            Next::Serve(token, remaining) => {
                return Ok(Served {
                    token,
                    remaining,
                    provider: read.provider,
                })
            }
            Next::Reauthorize => return Err(reauthorize.clone()),
            Next::Claim => {
                // A refresh this client could not wait for would end with the
                // client gone: leave the lease free and let it retry.
                let Some(wait_ms) =
                    budget.upstream_wait(runtime.now_ms(), runtime.upstream_timeout_ms())
                else {
                    return Err(BrokerError::RefreshPending);
                };
                if let Some(lease) = grants.claim(&read, now).await? {
                    let work = refresh_with_lease(
                        grants.clone(),
                        runtime.clone(),
                        reauthorize.clone(),
                        read,
                        lease,
                    );
                    return detach
                        .finish(work, wait_ms)
                        .await
                        .unwrap_or(Err(BrokerError::ProviderTimeout));
                }
                // The replica's row is no longer the primary's: read it now.
                if read_from == ReadFrom::Replica {
                    continue;
                }
            }
            Next::Wait => {}
        }
        if budget.spent(runtime.now_ms()) {
            return Err(BrokerError::RefreshPending);
        }
        runtime.sleep(POLL_MS).await;
    }
}

fn unix_secs(ms: u64) -> i64 {
    i64::try_from(ms / 1000).unwrap_or(i64::MAX)
}

/// Holding the lease: one upstream refresh, then what [`settle`] decides. Runs
/// detached: it owns everything it needs.
async fn refresh_with_lease(
    grants: impl Grants,
    runtime: impl Runtime,
    reauthorize: BrokerError,
    read: Opened,
    lease: LeaseId,
) -> Result<Served, BrokerError> {
    let outcome = match read.grant.refresh_token() {
        Some(rt) => runtime.refresh_upstream(&read.provider, &rt).await,
        // Opening guarantees a refresh token; fail closed if it ever were not so.
        None => Err(BrokerError::UnknownAuthId),
    };
    let now = unix_secs(runtime.now_ms());
    match settle(read.grant.clone(), outcome, now, reauthorize) {
        Settle::Persist {
            grant,
            token,
            remaining,
        } => {
            // Persisted before answering: a client that got an access token must
            // never leave the broker holding a spent refresh token.
            match persist(&grants, &runtime, &read, &lease, &grant, now).await {
                Ok(true) => {}
                // Someone wrote the row after our lease ran out: theirs is newer.
                Ok(false) => runtime.warn("refresh: row changed under our lease; newer grant kept"),
                // D1 refused every attempt. The access token is still good for
                // this backup; the rotated refresh token could not be kept.
                Err(e) => runtime.warn(&format!(
                    "refresh: refreshed grant not stored: {}",
                    e.cause().unwrap_or_default()
                )),
            }
            Ok(Served {
                token,
                remaining,
                provider: read.provider,
            })
        }
        Settle::Release {
            status,
            error,
            outcome,
        } => {
            grants.release(&read, &lease, status, outcome, now).await?;
            Err(error)
        }
    }
}

/// Writes the refreshed grant, retrying a failing write ([`WRITE_ATTEMPTS`]
/// in all, backing off from [`WRITE_RETRY_MS`]) inside the lease.
async fn persist(
    grants: &impl Grants,
    runtime: &impl Runtime,
    read: &Opened,
    lease: &LeaseId,
    grant: &Grant,
    now: i64,
) -> Result<bool, BrokerError> {
    let mut pause = WRITE_RETRY_MS;
    let mut attempt = 1;
    loop {
        match grants.write(read, lease, grant, now).await {
            Err(e) if attempt < WRITE_ATTEMPTS => {
                runtime.warn(&format!(
                    "refresh: write failed, retrying: {}",
                    e.cause().unwrap_or_default()
                ));
                runtime.sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            // A failed attempt may have committed and lost only its answer:
            // then the row holds this very grant (a retry's compare-and-swap
            // finds the version moved, or fails too). Read back before
            // reporting a loss or a newer grant that never happened.
            Ok(false) if attempt > 1 => return Ok(holds(grants, grant).await),
            Err(e) if holds(grants, grant).await => {
                runtime.warn(&format!(
                    "refresh: write answered an error but was stored: {}",
                    e.cause().unwrap_or_default()
                ));
                return Ok(true);
            }
            result => return result,
        }
    }
}

/// Whether the grant's row, read on the primary, holds `grant` itself.
async fn holds(grants: &impl Grants, grant: &Grant) -> bool {
    matches!(grants.open(ReadFrom::Primary).await, Ok(o) if o.grant == *grant)
}

/// One request's time: how long it may keep waiting for another request's
/// refresh, and whether it may still start one itself, measured on the
/// runtime's millisecond clock from the request's start.
#[derive(Debug, Clone, Copy)]
pub struct WaitBudget {
    started_ms: u64,
}

impl WaitBudget {
    pub fn starting(now_ms: u64) -> WaitBudget {
        WaitBudget { started_ms: now_ms }
    }

    /// Spent: stop waiting and answer [`BrokerError::RefreshPending`] (retryable).
    pub fn spent(&self, now_ms: u64) -> bool {
        now_ms >= self.started_ms.saturating_add(WAIT_BUDGET_MS)
    }

    /// How long this client can wait for an upstream refresh started now and
    /// its write: the upstream timeout plus [`PERSIST_WAIT_MS`], or `None` when
    /// that would end past the client's budget (then nobody should start one
    /// on its behalf).
    pub fn upstream_wait(&self, now_ms: u64, upstream_timeout_ms: u64) -> Option<u64> {
        let wait = upstream_timeout_ms.saturating_add(PERSIST_WAIT_MS);
        let ends = now_ms.saturating_add(wait).saturating_add(ANSWER_MARGIN_MS);
        (ends <= self.started_ms.saturating_add(CLIENT_BUDGET_MS)).then_some(wait)
    }
}

/// What the lease holder does once the provider answered (or did not).
#[derive(Debug, PartialEq)]
pub enum Settle {
    /// Write this grant (a rotated refresh token included) with compare-and-swap,
    /// releasing the lease, and only then answer with the access token.
    Persist {
        grant: Grant,
        token: AccessToken,
        remaining: i64,
    },
    /// Release the lease without touching the sealed grant, leave the row with
    /// `status` and the upstream call's `outcome` ([`upstream::outcome`]), and
    /// answer `error`.
    Release {
        status: Status,
        error: BrokerError,
        outcome: &'static str,
    },
}

/// Decides what to persist and answer after the upstream refresh of `grant`.
/// `outcome` is the classified provider answer, or why there was none
/// (timeout, refused connection, unconfigured provider). `reauthorize` is the
/// error telling the user to log in again at this broker.
pub fn settle(
    mut grant: Grant,
    outcome: Result<Upstream, BrokerError>,
    now: i64,
    reauthorize: BrokerError,
) -> Settle {
    let recorded = upstream::outcome(&outcome);
    match outcome {
        Ok(Upstream::Ok(resp)) => {
            grant.apply_refresh(resp, now);
            // A parsed token response always has an access token; its remaining
            // life is what the provider said, even if that is under the cache floor.
            let token = grant.access_token();
            let remaining = grant.expires_at.saturating_sub(now).max(0);
            match token {
                Some(token) => Settle::Persist {
                    grant,
                    token,
                    remaining,
                },
                None => Settle::Release {
                    status: Status::Active,
                    error: BrokerError::ProviderFailed,
                    outcome: upstream::outcome(&Ok(Upstream::Failed(Failure::Malformed))),
                },
            }
        }
        // Remembered: later calls answer at once, never asking the provider again.
        Ok(Upstream::InvalidGrant) => Settle::Release {
            status: Status::ReauthRequired,
            error: reauthorize,
            outcome: recorded,
        },
        Ok(Upstream::Failed(_)) => Settle::Release {
            status: Status::Active,
            error: BrokerError::ProviderFailed,
            outcome: recorded,
        },
        // The operator's client is refused, not the grant: kept as it is.
        Ok(Upstream::ClientRejected) => Settle::Release {
            status: Status::Active,
            error: BrokerError::ProviderRejectedClient,
            outcome: recorded,
        },
        Err(error) => Settle::Release {
            status: Status::Active,
            error,
            outcome: recorded,
        },
    }
}

/// The answer to a pass-through (v2) refresh: nothing is stored, so the
/// client must be told which refresh token to present next time.
#[derive(Debug, PartialEq)]
pub struct PassThrough {
    pub access_token: AccessToken,
    pub expires_in: i64,
    /// The rotated refresh token when the provider rotated it, else the one
    /// presented: never a spent one.
    pub next: RefreshToken,
}

/// Decides the answer to a v2 refresh of `presented` from the provider's `outcome`.
pub fn pass_through(
    presented: &RefreshToken,
    outcome: Result<Upstream, BrokerError>,
    reauthorize: BrokerError,
) -> Result<PassThrough, BrokerError> {
    let resp = match outcome {
        // The authid names a provider this broker does not serve (any more):
        // to the client that is an authid it cannot use.
        Err(BrokerError::UnknownProvider) => return Err(BrokerError::UnknownAuthId),
        Err(e) => return Err(e),
        Ok(Upstream::Ok(resp)) => resp,
        Ok(Upstream::InvalidGrant) => return Err(reauthorize),
        Ok(Upstream::Failed(_)) => return Err(BrokerError::ProviderFailed),
        Ok(Upstream::ClientRejected) => return Err(BrokerError::ProviderRejectedClient),
    };
    Ok(PassThrough {
        access_token: AccessToken::new(resp.access_token().to_string()),
        expires_in: resp.expires_in().unwrap_or(DEFAULT_EXPIRES_IN),
        next: resp
            .refresh_token()
            .map(|rt| RefreshToken::new(rt.to_string()))
            .unwrap_or_else(|| presented.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_start_at_a_random_version_a_double_can_hold_exactly() {
        let v: Vec<i64> = (0..64).map(|_| first_version().unwrap()).collect();
        assert!(v.iter().all(|&x| (1..=(1i64 << 52)).contains(&x)));
        let distinct: std::collections::BTreeSet<_> = v.iter().collect();
        assert_eq!(distinct.len(), v.len(), "no restart at a shared value");
    }
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

    fn reauth() -> BrokerError {
        BrokerError::ReauthorizationRequired {
            broker_url: "https://b.example/".into(),
        }
    }

    fn ok(json: &str) -> Result<Upstream, BrokerError> {
        Ok(Upstream::Ok(TokenResponse::parse(json.as_bytes()).unwrap()))
    }

    #[test]
    fn a_rotated_refresh_token_is_persisted_before_the_access_token_is_answered() {
        let s = settle(
            grant(30, 0),
            ok(r#"{"access_token":"AT2","refresh_token":"RT2","expires_in":3600}"#),
            100,
            reauth(),
        );
        let Settle::Persist {
            grant,
            token,
            remaining,
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(grant.refresh_token().unwrap().secret(), "RT2");
        assert_eq!(token.secret(), "AT2");
        assert_eq!((grant.expires_at, remaining), (3700, 3600));
    }

    #[test]
    fn a_refresh_without_rotation_keeps_the_old_refresh_token() {
        let s = settle(grant(30, 0), ok(r#"{"access_token":"AT2"}"#), 100, reauth());
        let Settle::Persist {
            grant, remaining, ..
        } = s
        else {
            panic!("{s:?}")
        };
        assert_eq!(grant.refresh_token().unwrap().secret(), "RT");
        assert_eq!(remaining, DEFAULT_EXPIRES_IN);
    }

    #[test]
    fn a_short_lived_token_is_still_answered_with_its_true_remaining_life() {
        let s = settle(
            grant(30, 0),
            ok(r#"{"access_token":"AT2","expires_in":30}"#),
            100,
            reauth(),
        );
        assert!(matches!(s, Settle::Persist { remaining: 30, .. }), "{s:?}");
    }

    #[test]
    fn invalid_grant_releases_the_lease_and_marks_the_grant_for_reauthorization() {
        let s = settle(grant(30, 0), Ok(Upstream::InvalidGrant), 100, reauth());
        assert_eq!(
            s,
            Settle::Release {
                status: Status::ReauthRequired,
                error: reauth(),
                outcome: "invalid_grant"
            }
        );
    }

    #[test]
    fn a_provider_failure_releases_the_lease_and_leaves_the_grant_active() {
        for (failure, outcome) in [
            (Failure::Unavailable, "provider_5xx"),
            (Failure::Refused, "provider_4xx"),
            (Failure::Malformed, "malformed"),
        ] {
            let s = settle(grant(30, 0), Ok(Upstream::Failed(failure)), 100, reauth());
            assert_eq!(
                s,
                Settle::Release {
                    status: Status::Active,
                    error: BrokerError::ProviderFailed,
                    outcome
                }
            );
        }
        for (e, outcome) in [
            (BrokerError::ProviderTimeout, "timeout"),
            (BrokerError::UnknownProvider, "unreachable"),
        ] {
            let s = settle(grant(30, 0), Err(e.clone()), 100, reauth());
            assert_eq!(
                s,
                Settle::Release {
                    status: Status::Active,
                    error: e,
                    outcome
                }
            );
        }
    }

    #[test]
    fn a_pass_through_refresh_hands_back_the_rotated_token_or_the_presented_one() {
        let presented = RefreshToken::new("RT".into());
        let p = pass_through(
            &presented,
            ok(r#"{"access_token":"AT","refresh_token":"RT2","expires_in":"120"}"#),
            reauth(),
        )
        .unwrap();
        assert_eq!(
            (p.access_token.secret(), p.expires_in, p.next.secret()),
            ("AT", 120, "RT2")
        );
        let p = pass_through(&presented, ok(r#"{"access_token":"AT"}"#), reauth()).unwrap();
        assert_eq!((p.expires_in, p.next.secret()), (DEFAULT_EXPIRES_IN, "RT"));
    }

    #[test]
    fn a_pass_through_failure_is_the_providers_answer() {
        let rt = RefreshToken::new("RT".into());
        assert_eq!(
            pass_through(&rt, Ok(Upstream::InvalidGrant), reauth()),
            Err(reauth())
        );
        assert_eq!(
            pass_through(&rt, Ok(Upstream::Failed(Failure::Unavailable)), reauth()),
            Err(BrokerError::ProviderFailed)
        );
        assert_eq!(
            pass_through(&rt, Err(BrokerError::ProviderTimeout), reauth()),
            Err(BrokerError::ProviderTimeout)
        );
        assert_eq!(
            pass_through(&rt, Err(BrokerError::UnknownProvider), reauth()),
            Err(BrokerError::UnknownAuthId),
            "a v2 authid for a provider we do not serve is unusable, not a server fault"
        );
    }

    #[test]
    fn waiting_ends_when_the_budget_is_spent() {
        let b = WaitBudget::starting(1_000);
        assert!(!b.spent(1_000 + WAIT_BUDGET_MS - 1));
        assert!(b.spent(1_000 + WAIT_BUDGET_MS));
        assert!(!WaitBudget::starting(u64::MAX).spent(u64::MAX - 1));
    }

    /// The in-memory row and world the loop runs against in these tests.
    mod world {
        use super::*;
        use std::cell::{Cell, RefCell};
        use std::collections::VecDeque;
        use std::future::Future;
        use std::pin::pin;
        use std::rc::Rc;
        use std::task::{Context, Poll, Waker};

        /// Runs a future whose I/O is all in memory (always ready).
        pub fn block_on<F: Future>(f: F) -> F::Output {
            let mut f = pin!(f);
            let mut cx = Context::from_waker(Waker::noop());
            loop {
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    return v;
                }
            }
        }

        /// What another request does at some point of this one.
        pub type Hook = Box<dyn Fn(&World)>;

        #[derive(Clone)]
        pub struct Row {
            pub grant: Grant,
            pub version: i64,
            pub status: Status,
            pub lease_until: i64,
            pub lease: Option<LeaseId>,
        }

        /// One grant row plus a scripted world: the clock (advanced by
        /// `sleep`), the provider's answers, and what another request does
        /// while this one sleeps.
        pub struct World {
            pub row: RefCell<Row>,
            /// What the nearest replica holds: `None` = in step with the
            /// primary; `Some(None)` = the row has not reached it yet;
            /// `Some(Some(row))` = an older copy.
            pub replica: RefCell<Option<Option<Row>>>,
            /// Where each read went, in order.
            pub reads: RefCell<Vec<ReadFrom>>,
            /// The primary no longer has the row (revoked).
            pub deleted: Cell<bool>,
            /// Every refresh token presented upstream.
            pub presented: RefCell<Vec<String>>,
            pub now_ms: Cell<u64>,
            pub answers: RefCell<VecDeque<Result<Upstream, BrokerError>>>,
            pub upstream_calls: Cell<u32>,
            pub claims_lost: Cell<u32>,
            pub fail_open: Cell<bool>,
            pub warnings: RefCell<Vec<String>>,
            pub on_sleep: RefCell<Option<Hook>>,
            pub before_claim: RefCell<Option<Hook>>,
            /// Another request writes the row just before our write.
            pub steal_lease_before_write: Cell<bool>,
            pub upstream_timeout_ms: Cell<u64>,
            /// How long the provider takes to answer (advances the clock).
            pub upstream_delay_ms: Cell<u64>,
            /// How many writes fail (D1 down) before they succeed.
            pub write_failures: Cell<u32>,
            /// Writes that run (commit or find the version moved) and then
            /// answer an error anyway: an answer D1 lost.
            pub write_answers_lost: Cell<u32>,
            pub writes: Cell<u32>,
        }

        /// The world as the loop holds it: shared, cloneable, `'static`.
        #[derive(Clone)]
        pub struct Shared(pub Rc<World>);

        impl std::ops::Deref for Shared {
            type Target = World;
            fn deref(&self) -> &World {
                &self.0
            }
        }

        /// A client that waits for the detached refresh.
        pub struct Waits;

        impl Detach for Waits {
            async fn finish<T: 'static>(
                &self,
                work: impl Future<Output = T> + 'static,
                _wait_ms: u64,
            ) -> Option<T> {
                Some(work.await)
            }
        }

        /// A client that hangs up once the refresh has started: the runtime
        /// would cancel the request; the detached work is left in `left`.
        #[derive(Default)]
        pub struct HangsUp {
            pub left: RefCell<Vec<std::pin::Pin<Box<dyn Future<Output = ()>>>>>,
        }

        impl Detach for HangsUp {
            async fn finish<T: 'static>(
                &self,
                work: impl Future<Output = T> + 'static,
                _wait_ms: u64,
            ) -> Option<T> {
                self.left.borrow_mut().push(Box::pin(async move {
                    work.await;
                }));
                None
            }
        }

        impl World {
            #[allow(clippy::new_ret_no_self)]
            pub fn new(grant: Grant, now_s: i64) -> Shared {
                Shared(Rc::new(World {
                    row: RefCell::new(Row {
                        grant,
                        version: 1,
                        status: Status::Active,
                        lease_until: 0,
                        lease: None,
                    }),
                    replica: RefCell::new(None),
                    reads: RefCell::new(Vec::new()),
                    deleted: Cell::new(false),
                    presented: RefCell::new(Vec::new()),
                    now_ms: Cell::new(now_s as u64 * 1000),
                    answers: RefCell::new(VecDeque::new()),
                    upstream_calls: Cell::new(0),
                    claims_lost: Cell::new(0),
                    fail_open: Cell::new(false),
                    warnings: RefCell::new(Vec::new()),
                    on_sleep: RefCell::new(None),
                    before_claim: RefCell::new(None),
                    steal_lease_before_write: Cell::new(false),
                    upstream_timeout_ms: Cell::new(UPSTREAM_TIMEOUT_MS),
                    upstream_delay_ms: Cell::new(0),
                    write_failures: Cell::new(0),
                    write_answers_lost: Cell::new(0),
                    writes: Cell::new(0),
                }))
            }

            pub fn answer(&self, a: Result<Upstream, BrokerError>) {
                self.answers.borrow_mut().push_back(a);
            }

            pub fn now(&self) -> i64 {
                (self.now_ms.get() / 1000) as i64
            }
        }

        impl Shared {
            pub fn run(&self) -> Result<Served, BrokerError> {
                block_on(single_flight(self, self, &Waits, &reauth()))
            }

            pub fn run_with(&self, detach: &impl Detach) -> Result<Served, BrokerError> {
                block_on(single_flight(self, self, detach, &reauth()))
            }
        }

        impl Grants for Shared {
            async fn open(&self, from: ReadFrom) -> Result<Opened, BrokerError> {
                self.reads.borrow_mut().push(from);
                if self.fail_open.get() {
                    return Err(BrokerError::storage("d1 find_grant: down"));
                }
                let primary = self.row.borrow().clone();
                let r = match (from, self.replica.borrow().clone()) {
                    (ReadFrom::Replica, Some(None)) => return Err(BrokerError::UnknownAuthId),
                    (ReadFrom::Replica, Some(Some(stale))) => stale,
                    _ if self.deleted.get() => return Err(BrokerError::UnknownAuthId),
                    _ => primary,
                };
                Ok(Opened {
                    provider: ProviderId::new("demo"),
                    status: r.status,
                    lease_until: r.lease_until,
                    grant: r.grant.clone(),
                    key_hash: KeyHash::new("kh"),
                    version: r.version,
                })
            }

            async fn claim(&self, read: &Opened, now: i64) -> Result<Option<LeaseId>, BrokerError> {
                if let Some(f) = self.before_claim.borrow_mut().take() {
                    f(self);
                }
                let mut r = self.row.borrow_mut();
                if self.deleted.get()
                    || r.version != read.version
                    || r.lease_until > now
                    || r.status != Status::Active
                {
                    self.claims_lost.set(self.claims_lost.get() + 1);
                    return Ok(None);
                }
                let lease = LeaseId::new(format!("lease-{}", r.version));
                r.lease_until = now + LEASE_SECS;
                r.lease = Some(lease.clone());
                Ok(Some(lease))
            }

            async fn write(
                &self,
                read: &Opened,
                _lease: &LeaseId,
                grant: &Grant,
                _now: i64,
            ) -> Result<bool, BrokerError> {
                self.writes.set(self.writes.get() + 1);
                if self.write_failures.get() > 0 {
                    self.write_failures.set(self.write_failures.get() - 1);
                    return Err(BrokerError::storage("d1 write_refreshed: busy"));
                }
                let written = {
                    let mut r = self.row.borrow_mut();
                    if self.steal_lease_before_write.get() {
                        r.version += 1;
                    }
                    // Compare-and-swap on the version alone, as the vault's UPDATE does.
                    if r.version != read.version {
                        false
                    } else {
                        r.grant = grant.clone();
                        r.version += 1;
                        r.status = Status::Active;
                        r.lease_until = 0;
                        r.lease = None;
                        true
                    }
                };
                if self.write_answers_lost.get() > 0 {
                    self.write_answers_lost
                        .set(self.write_answers_lost.get() - 1);
                    return Err(BrokerError::storage("d1 write_refreshed: answer lost"));
                }
                Ok(written)
            }

            async fn release(
                &self,
                _read: &Opened,
                lease: &LeaseId,
                status: Status,
                _outcome: &'static str,
                _now: i64,
            ) -> Result<(), BrokerError> {
                let mut r = self.row.borrow_mut();
                if r.lease.as_ref() == Some(lease) {
                    r.lease_until = 0;
                    r.lease = None;
                    r.status = status;
                }
                Ok(())
            }
        }

        impl Runtime for Shared {
            fn now_ms(&self) -> u64 {
                self.now_ms.get()
            }

            fn upstream_timeout_ms(&self) -> u64 {
                self.upstream_timeout_ms.get()
            }

            async fn sleep(&self, ms: u64) {
                self.now_ms.set(self.now_ms.get() + ms);
                if let Some(f) = self.on_sleep.borrow().as_ref() {
                    f(self);
                }
            }

            async fn refresh_upstream(
                &self,
                provider: &ProviderId,
                refresh_token: &RefreshToken,
            ) -> Result<Upstream, BrokerError> {
                assert_eq!(provider.as_str(), "demo");
                assert!(!refresh_token.secret().is_empty());
                self.presented
                    .borrow_mut()
                    .push(refresh_token.secret().to_string());
                self.upstream_calls.set(self.upstream_calls.get() + 1);
                self.now_ms
                    .set(self.now_ms.get() + self.upstream_delay_ms.get());
                self.answers
                    .borrow_mut()
                    .pop_front()
                    .unwrap_or(Ok(Upstream::Failed(Failure::Unavailable)))
            }

            fn warn(&self, message: &str) {
                self.warnings.borrow_mut().push(message.to_string());
            }
        }
    }

    use world::World;

    const NOW: i64 = 1_000_000;

    fn rotated() -> Result<Upstream, BrokerError> {
        ok(r#"{"access_token":"AT2","refresh_token":"RT2","expires_in":3600}"#)
    }

    #[test]
    fn a_fresh_cached_token_is_served_without_a_lease_or_an_upstream_call() {
        let w = World::new(grant(3600, NOW), NOW);
        let served = w.run().unwrap();
        assert_eq!(served.token.secret(), "AT");
        assert_eq!(served.remaining, 3600);
        assert_eq!(served.provider.as_str(), "demo");
        assert_eq!(w.upstream_calls.get(), 0);
        assert_eq!(w.row.borrow().version, 1, "nothing written");
    }

    #[test]
    fn an_expiring_token_is_refreshed_once_and_the_rotated_refresh_token_is_stored() {
        let w = World::new(grant(30, NOW), NOW);
        w.answer(rotated());
        let served = w.run().unwrap();
        assert_eq!(served.token.secret(), "AT2");
        assert_eq!(w.upstream_calls.get(), 1);
        let row = w.row.borrow();
        assert_eq!(row.grant.refresh_token().unwrap().secret(), "RT2");
        assert_eq!(
            (row.version, row.lease_until, row.lease.is_none()),
            (2, 0, true)
        );
    }

    #[test]
    fn a_waiter_serves_the_winners_token_and_never_goes_upstream() {
        let w = World::new(grant(30, NOW), NOW);
        w.row.borrow_mut().lease_until = NOW + 10;
        // Another request holds the lease and writes a new grant while we sleep.
        *w.on_sleep.borrow_mut() = Some(Box::new(|w: &World| {
            if w.now_ms.get() >= (NOW as u64 + 2) * 1000 {
                let mut r = w.row.borrow_mut();
                if r.version == 1 {
                    r.grant = grant(3600, w.now());
                    r.version = 2;
                    r.lease_until = 0;
                }
            }
        }));
        let served = w.run().unwrap();
        assert_eq!(served.token.secret(), "AT");
        assert!(served.remaining > 3500);
        assert_eq!(w.upstream_calls.get(), 0);
    }

    #[test]
    fn a_crashed_winners_lease_expires_and_then_this_request_refreshes() {
        let w = World::new(grant(30, NOW), NOW);
        w.row.borrow_mut().lease_until = NOW + 3;
        w.row.borrow_mut().lease = Some(LeaseId::new("crashed"));
        w.answer(rotated());
        let served = w.run().unwrap();
        assert_eq!(served.token.secret(), "AT2");
        assert_eq!(w.upstream_calls.get(), 1);
        assert!(
            w.now() >= NOW + 3,
            "went upstream only after the lease expired"
        );
    }

    #[test]
    fn a_lease_held_past_the_wait_budget_answers_refresh_pending_without_going_upstream() {
        let w = World::new(grant(30, NOW), NOW);
        w.row.borrow_mut().lease_until = NOW + 120;
        assert_eq!(w.run().unwrap_err(), BrokerError::RefreshPending);
        assert_eq!(w.upstream_calls.get(), 0);
        let waited = w.now_ms.get() - NOW as u64 * 1000;
        assert!((WAIT_BUDGET_MS..WAIT_BUDGET_MS + 2 * POLL_MS).contains(&waited));
    }

    #[test]
    fn a_claim_lost_to_a_concurrent_writer_reads_the_row_again() {
        let w = World::new(grant(30, NOW), NOW);
        // Between our read and our claim, another request refreshed the row.
        *w.before_claim.borrow_mut() = Some(Box::new(|w: &World| {
            let mut r = w.row.borrow_mut();
            r.grant = grant(3600, w.now());
            r.version = 2;
        }));
        let served = w.run().unwrap();
        assert_eq!(served.token.secret(), "AT");
        assert_eq!(w.claims_lost.get(), 1);
        assert_eq!(w.upstream_calls.get(), 0);
    }

    #[test]
    fn invalid_grant_is_remembered_so_the_provider_is_never_asked_again() {
        let w = World::new(grant(30, NOW), NOW);
        w.answer(Ok(Upstream::InvalidGrant));
        assert_eq!(w.run().unwrap_err(), reauth());
        assert_eq!(w.row.borrow().status, Status::ReauthRequired);
        assert_eq!(w.run().unwrap_err(), reauth());
        assert_eq!(w.upstream_calls.get(), 1);
        let row = w.row.borrow();
        assert_eq!(
            row.grant.refresh_token().unwrap().secret(),
            "RT",
            "sealed grant kept"
        );
    }

    #[test]
    fn a_provider_failure_or_timeout_leaves_the_grant_as_it_was_and_the_lease_free() {
        for failure in [
            Ok(Upstream::Failed(Failure::Unavailable)),
            Err(BrokerError::ProviderTimeout),
        ] {
            let w = World::new(grant(30, NOW), NOW);
            let expected = match &failure {
                Ok(_) => BrokerError::ProviderFailed,
                Err(e) => e.clone(),
            };
            w.answer(failure);
            assert_eq!(w.run().unwrap_err(), expected);
            let row = w.row.borrow();
            assert_eq!(
                (row.version, row.lease_until, row.status),
                (1, 0, Status::Active)
            );
            drop(row);
            w.answer(rotated());
            assert_eq!(w.run().unwrap().token.secret(), "AT2", "recovers");
        }
    }

    #[test]
    fn a_row_written_by_someone_else_meanwhile_is_never_overwritten() {
        let w = World::new(grant(30, NOW), NOW);
        w.steal_lease_before_write.set(true);
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(w.warnings.borrow().len(), 1);
        let row = w.row.borrow();
        assert_eq!(row.version, 2, "the other write stands");
        assert_eq!(row.grant.refresh_token().unwrap().secret(), "RT");
    }

    #[test]
    fn a_storage_failure_is_answered_as_such() {
        let w = World::new(grant(30, NOW), NOW);
        w.fail_open.set(true);
        assert_eq!(w.run().unwrap_err().code(), "storage_unavailable");
        assert_eq!(w.upstream_calls.get(), 0);
    }

    #[test]
    fn a_client_hanging_up_mid_refresh_cannot_lose_the_rotated_refresh_token() {
        let w = World::new(grant(30, NOW), NOW);
        w.answer(rotated());
        let client = world::HangsUp::default();
        // The client is gone before the provider answers; the runtime cancels
        // the request, but not the work handed over.
        assert_eq!(
            w.run_with(&client).unwrap_err(),
            BrokerError::ProviderTimeout
        );
        let left = client.left.borrow_mut().pop().expect("refresh handed over");
        world::block_on(left);
        {
            let row = w.row.borrow();
            assert_eq!(row.grant.refresh_token().unwrap().secret(), "RT2");
            assert_eq!((row.version, row.lease.is_none()), (2, true));
        }
        // The next client is served the new token; nothing spent goes upstream.
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(w.upstream_calls.get(), 1);
    }

    #[test]
    fn a_late_waiter_never_starts_a_refresh_it_could_not_wait_for() {
        let w = World::new(grant(30, NOW), NOW);
        // A crashed winner's lease runs out 12 s into this request: too late to
        // start a 15 s upstream call inside the client's 25 s.
        w.row.borrow_mut().lease_until = NOW + 12;
        w.row.borrow_mut().lease = Some(LeaseId::new("crashed"));
        assert_eq!(w.run().unwrap_err(), BrokerError::RefreshPending);
        assert_eq!(w.upstream_calls.get(), 0);
        assert_eq!(
            w.row.borrow().lease,
            Some(LeaseId::new("crashed")),
            "the lease was left free for the client's retry"
        );
        let elapsed = w.now_ms.get() - NOW as u64 * 1000;
        assert!(elapsed < CLIENT_BUDGET_MS, "answered after {elapsed} ms");
        // An early enough expiry is still claimed.
        let w = World::new(grant(30, NOW), NOW);
        w.row.borrow_mut().lease_until = NOW + 5;
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
    }

    #[test]
    fn a_result_the_provider_issued_is_kept_even_after_the_lease_ran_out() {
        let w = World::new(grant(30, NOW), NOW);
        // The provider answers only after the lease expired; nobody wrote the
        // row meanwhile, so its answer (the only copy of the rotated token) is kept.
        w.upstream_delay_ms.set(LEASE_SECS as u64 * 1000 + 5_000);
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        let row = w.row.borrow();
        assert_eq!(row.grant.refresh_token().unwrap().secret(), "RT2");
        assert_eq!(row.version, 2);
    }

    #[test]
    fn a_storage_hiccup_during_the_write_is_retried_and_the_rotated_token_kept() {
        let w = World::new(grant(30, NOW), NOW);
        w.write_failures.set(WRITE_ATTEMPTS - 1);
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(w.writes.get(), WRITE_ATTEMPTS);
        assert_eq!(
            w.row.borrow().grant.refresh_token().unwrap().secret(),
            "RT2"
        );
    }

    #[test]
    fn a_write_that_keeps_failing_still_answers_and_says_so_in_the_log() {
        let w = World::new(grant(30, NOW), NOW);
        w.write_failures.set(WRITE_ATTEMPTS + 5);
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(w.writes.get(), WRITE_ATTEMPTS, "bounded retries");
        assert!(w.warnings.borrow().iter().any(|m| m.contains("not stored")));
    }

    #[test]
    fn a_write_whose_answers_were_lost_is_read_back_and_not_reported_as_a_loss() {
        let w = World::new(grant(30, NOW), NOW);
        w.write_answers_lost.set(WRITE_ATTEMPTS + 5);
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(w.writes.get(), WRITE_ATTEMPTS, "bounded retries");
        let row = w.row.borrow();
        assert_eq!(row.grant.refresh_token().unwrap().secret(), "RT2");
        assert_eq!(row.version, 2, "stored once");
        let warnings = w.warnings.borrow();
        assert!(
            !warnings.iter().any(|m| m.contains("not stored")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|m| m.contains("was stored")),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_upstream_refresh_starts_only_while_the_client_can_wait_for_it() {
        let b = WaitBudget::starting(0);
        let full = UPSTREAM_TIMEOUT_MS + PERSIST_WAIT_MS;
        assert_eq!(b.upstream_wait(0, UPSTREAM_TIMEOUT_MS), Some(full));
        let last = CLIENT_BUDGET_MS - full - ANSWER_MARGIN_MS;
        assert_eq!(b.upstream_wait(last, UPSTREAM_TIMEOUT_MS), Some(full));
        assert_eq!(b.upstream_wait(last + 1, UPSTREAM_TIMEOUT_MS), None);
        assert!(
            b.upstream_wait(last + 1, 3_000).is_some(),
            "a shorter timeout claims later"
        );
    }

    #[test]
    fn the_brokers_patience_is_between_the_client_timeout_and_its_ceiling() {
        assert_eq!(upstream_patience_ms(None, 3_000), UPSTREAM_PATIENCE_MS);
        assert_eq!(upstream_patience_ms(Some("1000"), 3_000), 3_000);
        assert_eq!(upstream_patience_ms(Some("8000"), 3_000), 8_000);
        assert_eq!(
            upstream_patience_ms(Some("999999"), 3_000),
            UPSTREAM_PATIENCE_MS
        );
    }

    // --- Read replicas: which read (replica or primary) each branch acts on.

    use ReadFrom::{Primary, Replica};

    fn row_of(g: Grant) -> world::Row {
        world::Row {
            grant: g,
            version: 1,
            status: Status::Active,
            lease_until: 0,
            lease: None,
        }
    }

    #[test]
    fn only_a_cache_hit_or_a_claim_read_on_a_replica_is_acted_on() {
        let at = || AccessToken::new("AT".into());
        assert_eq!(trust(Replica, Some(&Next::Serve(at(), 61))), Trust::Act);
        assert_eq!(
            trust(Replica, Some(&Next::Claim)),
            Trust::Act,
            "the claim checks the version on the primary"
        );
        for n in [Next::Wait, Next::Reauthorize] {
            assert_eq!(trust(Replica, Some(&n)), Trust::ReadPrimary, "{n:?}");
        }
        assert_eq!(trust(Replica, None), Trust::ReadPrimary, "no row yet");
        for n in [
            Next::Serve(at(), 61),
            Next::Claim,
            Next::Wait,
            Next::Reauthorize,
        ] {
            assert_eq!(trust(Primary, Some(&n)), Trust::Act, "{n:?}");
        }
        assert_eq!(trust(Primary, None), Trust::Act);
        assert_eq!(FIRST_READ, Replica);
    }

    #[test]
    fn a_cache_hit_is_served_from_one_replica_read_without_touching_the_primary() {
        let w = World::new(grant(3600, NOW), NOW);
        assert_eq!(w.run().unwrap().token.secret(), "AT");
        assert_eq!(*w.reads.borrow(), vec![Replica]);
        assert_eq!((w.upstream_calls.get(), w.writes.get()), (0, 0));
    }

    #[test]
    fn a_cache_miss_costs_one_replica_read_then_a_claim_and_a_write_on_the_primary() {
        let w = World::new(grant(30, NOW), NOW);
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(*w.reads.borrow(), vec![Replica], "no primary read");
        assert_eq!((w.upstream_calls.get(), w.writes.get()), (1, 1));
        assert_eq!(w.row.borrow().version, 2);
    }

    #[test]
    fn a_replica_behind_a_refresh_never_sends_its_spent_refresh_token_upstream() {
        // The primary was refreshed (RT rotated to RT2, token expiring again);
        // the replica still holds version 1 with the spent RT.
        let w = World::new(grant(30, NOW), NOW);
        *w.replica.borrow_mut() = Some(Some(row_of(grant(30, NOW))));
        {
            let mut r = w.row.borrow_mut();
            r.grant = grant(30, NOW);
            let json = r#"{"access_token":"AT1","refresh_token":"RT2","expires_in":30}"#;
            r.grant
                .apply_refresh(TokenResponse::parse(json.as_bytes()).unwrap(), NOW);
            r.version = 2;
        }
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(*w.presented.borrow(), vec!["RT2".to_string()]);
        assert_eq!(
            w.row.borrow().version,
            3,
            "written over the primary's version"
        );
    }

    #[test]
    fn a_replica_that_saw_an_expiring_token_defers_to_a_fresh_one_on_the_primary() {
        // The primary was refreshed since (version 2); the replica still has version 1.
        let w = World::new(grant(3600, NOW), NOW);
        w.row.borrow_mut().version = 2;
        *w.replica.borrow_mut() = Some(Some(row_of(grant(30, NOW))));
        assert_eq!(w.run().unwrap().token.secret(), "AT");
        assert_eq!(*w.reads.borrow(), vec![Replica, Primary]);
        assert_eq!(w.claims_lost.get(), 1, "the stale version's claim lost");
        assert_eq!(
            w.now_ms.get(),
            NOW as u64 * 1000,
            "read again at once, no poll"
        );
        assert_eq!(
            w.upstream_calls.get(),
            0,
            "no refresh on a stale replica's word"
        );
    }

    #[test]
    fn a_lease_seen_on_a_replica_is_checked_on_the_primary_before_waiting() {
        // The replica still shows a lease the primary has long released.
        let w = World::new(grant(30, NOW), NOW);
        let mut stale = row_of(grant(30, NOW));
        stale.lease_until = NOW + LEASE_SECS;
        *w.replica.borrow_mut() = Some(Some(stale));
        w.answer(rotated());
        assert_eq!(w.run().unwrap().token.secret(), "AT2");
        assert_eq!(
            *w.reads.borrow(),
            vec![Replica, Primary],
            "no poll on the replica"
        );
    }

    #[test]
    fn reauthorization_seen_on_a_replica_is_confirmed_on_the_primary() {
        let w = World::new(grant(3600, NOW), NOW);
        let mut stale = row_of(grant(30, NOW));
        stale.status = Status::ReauthRequired;
        *w.replica.borrow_mut() = Some(Some(stale));
        assert_eq!(
            w.run().unwrap().token.secret(),
            "AT",
            "the primary is active"
        );
        w.row.borrow_mut().status = Status::ReauthRequired;
        assert_eq!(w.run(), Err(reauth()));
        assert_eq!(w.upstream_calls.get(), 0);
    }

    #[test]
    fn a_grant_not_yet_on_the_replica_is_found_on_the_primary() {
        let w = World::new(grant(3600, NOW), NOW);
        *w.replica.borrow_mut() = Some(None);
        assert_eq!(w.run().unwrap().token.secret(), "AT");
        assert_eq!(*w.reads.borrow(), vec![Replica, Primary]);
    }

    #[test]
    fn an_unknown_authid_is_unknown_only_once_the_primary_says_so() {
        let w = World::new(grant(3600, NOW), NOW);
        *w.replica.borrow_mut() = Some(None);
        w.deleted.set(true);
        assert_eq!(w.run(), Err(BrokerError::UnknownAuthId));
        assert_eq!(*w.reads.borrow(), vec![Replica, Primary]);
    }

    #[test]
    fn a_revoked_grant_is_never_refreshed_though_a_lagging_replica_may_serve_its_cached_token() {
        // Revoked on the primary; the replica has not replayed the delete.
        let w = World::new(grant(3600, NOW), NOW);
        *w.replica.borrow_mut() = Some(Some(row_of(grant(3600, NOW))));
        w.deleted.set(true);
        assert_eq!(
            w.run().unwrap().token.secret(),
            "AT",
            "bounded by replication lag: the cached access token only"
        );
        // Once that token is under the floor, the primary decides: gone.
        *w.replica.borrow_mut() = Some(Some(row_of(grant(30, NOW))));
        assert_eq!(w.run(), Err(BrokerError::UnknownAuthId));
        assert_eq!(
            w.upstream_calls.get(),
            0,
            "never refreshed after the revoke"
        );
        assert!(w.presented.borrow().is_empty());
    }

    #[test]
    fn every_read_after_the_first_is_on_the_primary_while_waiting_for_a_winner() {
        let w = World::new(grant(30, NOW), NOW);
        w.row.borrow_mut().lease_until = NOW + LEASE_SECS;
        *w.on_sleep.borrow_mut() = Some(Box::new(|w: &World| {
            if w.now_ms.get() >= (NOW as u64) * 1000 + 600 {
                let mut r = w.row.borrow_mut();
                r.grant = grant(3600, NOW);
                r.version = 2;
                r.lease_until = 0;
            }
        }));
        assert_eq!(w.run().unwrap().token.secret(), "AT");
        let reads = w.reads.borrow();
        assert_eq!(reads[0], Replica);
        assert!(
            reads.len() > 2 && reads[1..].iter().all(|r| *r == Primary),
            "{reads:?}"
        );
        assert_eq!(w.upstream_calls.get(), 0);
    }
}
