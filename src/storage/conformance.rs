//! The storage contract as checks any backend runs (`super`'s three
//! guarantees): natively against [`super::memory`] (`cargo test --lib`) and,
//! in the fault-injection build, against D1 itself (`POST /__conformance`,
//! `tests/e2e/storage_contract.rs`). Compiled only for tests and that build.
//!
//! Every row it writes has a fresh random key (authid, state, token, code),
//! so it never meets another test's rows; its clock is the caller's `now`,
//! which against a shared database should lie in the past (then a purge at
//! `now` can only delete rows this module wrote: every real row expires
//! later).

use std::future::Future;
use std::task::Poll;

use serde::Serialize;

use super::{
    Codes, Devices, Expiry, GrantStore, GrantVault, Grants, Handoffs, Logins, ShortLived, CHECKS,
};
use crate::authid::AuthId;
use crate::authorize::CodeRecord;
use crate::device::{DeviceRecord, Status as DeviceStatus};
use crate::digest::sha256_hex;
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::handoff::{ConfirmToken, HandoffBinding, FETCH_TTL_SECS};
use crate::ids::{LeaseId, ProviderId, Shard};
use crate::login::{LoginEnding, LoginRecord};
use crate::refresh::{ReadFrom, Status};
use crate::seal::Sealed;
use crate::secret::StateToken;

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub detail: String,
}

type Outcome = Result<(), String>;

/// Runs every check of [`CHECKS`], in order, against `vault` (grants on
/// `shard`) and `store` (the short-lived tables), at `now`.
pub async fn run<V, S>(vault: &V, store: &S, shard: Shard, now: i64) -> Vec<Check>
where
    V: GrantVault,
    S: Logins + Handoffs + Codes + Devices + Expiry,
{
    let g = GrantChecks { vault, shard, now };
    let outcomes: Vec<Outcome> = vec![
        g.insert_then_open().await,
        g.insert_if_absent_keeps().await,
        g.cas_write_succeeds().await,
        g.cas_write_stale().await,
        g.cas_replace_stale().await,
        g.concurrent_claims().await,
        g.lease_blocks_claims().await,
        g.release().await,
        g.revoke_once().await,
        g.tombstone().await,
        login_take_once(store, now).await,
        login_concurrent_takes(store, now).await,
        login_needs_binding(store, now).await,
        login_expired(store, now).await,
        handoff_collect_once(store, now).await,
        handoff_expired(store, now).await,
        code_concurrent_spends(store, now).await,
        code_expired(store, now).await,
        device_concurrent_collections(store, now).await,
        device_expired(store, now).await,
        purge_expired_only(store, now).await,
    ];
    let mut checks: Vec<Check> = CHECKS
        .iter()
        .zip(outcomes.iter())
        .map(|(name, outcome)| Check {
            name,
            passed: outcome.is_ok(),
            detail: outcome.clone().err().unwrap_or_default(),
        })
        .collect();
    if outcomes.len() != CHECKS.len() {
        checks.push(Check {
            name: "conformance: one outcome per named check",
            passed: false,
            detail: format!("{} outcomes, {} names", outcomes.len(), CHECKS.len()),
        });
    }
    checks
}

/// Polls both futures until both are done (two statements in flight at once
/// on a real backend; one after the other in memory).
async fn both<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(move |cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

/// A failed statement, as a check's detail (code and non-secret cause).
fn err(e: BrokerError) -> String {
    format!("{}: {}", e.code(), e.cause().unwrap_or_default())
}

fn ensure(ok: bool, detail: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(detail())
    }
}

/// 256 random bits, hex: a key nobody else's row has.
fn fresh() -> Result<String, String> {
    let mut b = [0u8; 32];
    crate::random::fill(&mut b).map_err(|e| err(e.into()))?;
    Ok(sha256_hex(
        &b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
    ))
}

fn provider() -> ProviderId {
    ProviderId::new("conformance")
}

/// A grant whose access token is `tag` (and already expired, as before a refresh).
fn grant(tag: &str) -> Grant {
    let mut token = serde_json::Map::new();
    token.insert("access_token".into(), tag.into());
    token.insert("refresh_token".into(), format!("rt-{tag}").into());
    Grant {
        token,
        expires_at: 0,
        account: None,
    }
}

fn sealed(tag: &str) -> Sealed {
    Sealed {
        key_version: 1,
        nonce: "Y29uZm9ybWFuY2U=".into(),
        ciphertext: format!("conformance-{tag}"),
    }
}

fn token(g: &Grant) -> String {
    g.token
        .get("access_token")
        .and_then(|v| v.as_str())
        .unwrap_or("(none)")
        .to_string()
}

struct GrantChecks<'v, V> {
    vault: &'v V,
    shard: Shard,
    now: i64,
}

impl<V: GrantVault> GrantChecks<'_, V> {
    /// A fresh authid's grant, not stored yet.
    fn fresh(&self) -> Result<V::Grant, String> {
        let authid = AuthId::generate(self.shard).map_err(|e| err(e.into()))?;
        self.vault.grant(authid).map_err(err)
    }

    /// A fresh authid's grant, stored with access token `tag`.
    async fn stored(&self, tag: &str) -> Result<V::Grant, String> {
        let g = self.fresh()?;
        g.insert(&provider(), &grant(tag), self.now)
            .await
            .map_err(err)?;
        Ok(g)
    }

    async fn insert_then_open(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(
            read.grant == grant("a")
                && read.provider == provider()
                && read.status == Status::Active
                && read.lease_until <= self.now,
            || format!("opened {} ({:?})", token(&read.grant), read.status),
        )?;
        ensure(g.exists().await.map_err(err)?, || {
            "exists() is false".into()
        })
    }

    async fn insert_if_absent_keeps(&self) -> Outcome {
        let g = self.fresh()?;
        let first = g
            .insert_if_absent(&provider(), &grant("a"), self.now)
            .await
            .map_err(err)?;
        let second = g
            .insert_if_absent(&provider(), &grant("b"), self.now)
            .await
            .map_err(err)?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(first && !second && read.grant == grant("a"), || {
            format!(
                "first {first}, second {second}, row holds {}",
                token(&read.grant)
            )
        })
    }

    async fn cas_write_succeeds(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        let lease = g
            .claim(&read, self.now)
            .await
            .map_err(err)?
            .ok_or("the only claim lost")?;
        let wrote = g
            .write(&read, &lease, &grant("b"), self.now)
            .await
            .map_err(err)?;
        let after = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(
            wrote
                && after.grant == grant("b")
                && after.version == read.version + 1
                && after.lease_until <= self.now,
            || {
                format!(
                    "wrote {wrote}, row holds {} at version +{}, lease until now{:+}",
                    token(&after.grant),
                    after.version - read.version,
                    after.lease_until - self.now
                )
            },
        )
    }

    async fn cas_write_stale(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        let lease = LeaseId::generate().map_err(|e| err(e.into()))?;
        let first = g
            .write(&read, &lease, &grant("b"), self.now)
            .await
            .map_err(err)?;
        // `read` is stale now: its version was the row's before `first`.
        let stale = g
            .write(&read, &lease, &grant("c"), self.now)
            .await
            .map_err(err)?;
        let after = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(
            first && !stale && after.grant == grant("b") && after.version == read.version + 1,
            || {
                format!(
                    "first {first}, stale write answered {stale}, row holds {} at version +{}",
                    token(&after.grant),
                    after.version - read.version
                )
            },
        )
    }

    async fn cas_replace_stale(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        let first = g
            .replace(&read, &provider(), &grant("b"), self.now)
            .await
            .map_err(err)?;
        let stale = g
            .replace(&read, &provider(), &grant("c"), self.now)
            .await
            .map_err(err)?;
        let after = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(
            first && !stale && after.grant == grant("b") && after.version == read.version + 1,
            || {
                format!(
                    "first {first}, stale replace answered {stale}, row holds {} at version +{}",
                    token(&after.grant),
                    after.version - read.version
                )
            },
        )
    }

    async fn concurrent_claims(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        let (x, y) = both(g.claim(&read, self.now), g.claim(&read, self.now)).await;
        let won = [x.map_err(err)?, y.map_err(err)?]
            .iter()
            .filter(|l| l.is_some())
            .count();
        ensure(won == 1, || format!("{won} of 2 claims won"))
    }

    async fn lease_blocks_claims(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        let lease = g
            .claim(&read, self.now)
            .await
            .map_err(err)?
            .ok_or("the only claim lost")?;
        let held = g.open(ReadFrom::Primary).await.map_err(err)?;
        let again = g.claim(&held, self.now + 1).await.map_err(err)?;
        ensure(again.is_none() && held.version == read.version, || {
            format!(
                "a second claim while the lease is held won: {}; a claim moved the version by {}",
                again.is_some(),
                held.version - read.version
            )
        })?;
        g.release(&read, &lease, Status::Active, "failed", self.now)
            .await
            .map_err(err)?;
        let freed = g.open(ReadFrom::Primary).await.map_err(err)?;
        let after = g.claim(&freed, self.now + 1).await.map_err(err)?;
        ensure(after.is_some(), || {
            "no claim wins after the lease was released".into()
        })
    }

    async fn release(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        let lease = g
            .claim(&read, self.now)
            .await
            .map_err(err)?
            .ok_or("the only claim lost")?;
        // Another request's lease releases nothing.
        let other = LeaseId::generate().map_err(|e| err(e.into()))?;
        g.release(
            &read,
            &other,
            Status::ReauthRequired,
            "invalid_grant",
            self.now,
        )
        .await
        .map_err(err)?;
        let still = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(
            still.lease_until > self.now && still.status == Status::Active,
            || "a release with another lease freed it or set the status".into(),
        )?;
        g.release(
            &read,
            &lease,
            Status::ReauthRequired,
            "invalid_grant",
            self.now,
        )
        .await
        .map_err(err)?;
        let after = g.open(ReadFrom::Primary).await.map_err(err)?;
        let claim = g.claim(&after, self.now).await.map_err(err)?;
        ensure(
            after.lease_until <= self.now
                && after.status == Status::ReauthRequired
                && after.grant == grant("a")
                && after.version == read.version
                && claim.is_none(),
            || {
                format!(
                    "after release: lease until now{:+}, {:?}, {} at version +{}, claimable {}",
                    after.lease_until - self.now,
                    after.status,
                    token(&after.grant),
                    after.version - read.version,
                    claim.is_some()
                )
            },
        )
    }

    async fn revoke_once(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        g.revoke(&read, false).await.map_err(err)?;
        let opened = g.open(ReadFrom::Primary).await;
        let known = g.known().await.map_err(err)?;
        let lease = LeaseId::generate().map_err(|e| err(e.into()))?;
        let wrote = g
            .write(&read, &lease, &grant("b"), self.now)
            .await
            .map_err(err)?;
        ensure(
            matches!(opened, Err(BrokerError::UnknownAuthId)) && !known && !wrote,
            || {
                format!(
                    "after revoke: open {}, known {known}, a write answered {wrote}",
                    match &opened {
                        Ok(o) => format!("found {}", token(&o.grant)),
                        Err(e) => e.code().to_string(),
                    }
                )
            },
        )
    }

    async fn tombstone(&self) -> Outcome {
        let g = self.stored("a").await?;
        let read = g.open(ReadFrom::Primary).await.map_err(err)?;
        g.revoke(&read, true).await.map_err(err)?;
        let opened = g.open(ReadFrom::Primary).await;
        let (known, exists) = (
            g.known().await.map_err(err)?,
            g.exists().await.map_err(err)?,
        );
        ensure(
            matches!(opened, Err(BrokerError::UnknownAuthId)) && known && !exists,
            || {
                format!(
                    "tombstone: opens {}, known {known}, exists {exists}",
                    opened.is_ok()
                )
            },
        )?;
        let again = g
            .insert_if_absent(&provider(), &grant("b"), self.now)
            .await
            .map_err(err)?;
        let after = g.open(ReadFrom::Primary).await.map_err(err)?;
        ensure(again && after.grant == grant("b"), || {
            format!(
                "insert over a tombstone: {again}, row holds {}",
                token(&after.grant)
            )
        })
    }
}

fn login(now: i64, ttl: i64) -> Result<(StateToken, LoginRecord), String> {
    Ok((
        StateToken::new(fresh()?),
        LoginRecord {
            provider: provider().as_str().to_string(),
            binding_hash: fresh()?,
            token_version: 1,
            fetch_token_hash: None,
            expires_at: now + ttl,
            ending: LoginEnding::default(),
        },
    ))
}

async fn login_take_once<S: Logins>(s: &S, now: i64) -> Outcome {
    let (state, r) = login(now, 600)?;
    s.insert_login(&state, &r, now).await.map_err(err)?;
    let first = s
        .take_login(&state, &r.binding_hash, now)
        .await
        .map_err(err)?;
    let second = s
        .take_login(&state, &r.binding_hash, now)
        .await
        .map_err(err)?;
    let found = s.find_login(&state, now).await.map_err(err)?;
    ensure(
        first.as_ref() == Some(&r) && second.is_none() && found.is_none(),
        || {
            format!(
                "first take {}, second {}, found after {}",
                first.is_some(),
                second.is_some(),
                found.is_some()
            )
        },
    )
}

async fn login_concurrent_takes<S: Logins>(s: &S, now: i64) -> Outcome {
    let (state, r) = login(now, 600)?;
    s.insert_login(&state, &r, now).await.map_err(err)?;
    let (x, y) = both(
        s.take_login(&state, &r.binding_hash, now),
        s.take_login(&state, &r.binding_hash, now),
    )
    .await;
    let got = [x.map_err(err)?, y.map_err(err)?]
        .iter()
        .filter(|t| t.is_some())
        .count();
    ensure(got == 1, || format!("{got} of 2 takes got the row"))
}

async fn login_needs_binding<S: Logins>(s: &S, now: i64) -> Outcome {
    let (state, r) = login(now, 600)?;
    s.insert_login(&state, &r, now).await.map_err(err)?;
    let other = s.take_login(&state, &fresh()?, now).await.map_err(err)?;
    let found = s.find_login(&state, now).await.map_err(err)?;
    let own = s
        .take_login(&state, &r.binding_hash, now)
        .await
        .map_err(err)?;
    ensure(
        other.is_none() && found.as_ref() == Some(&r) && own.is_some(),
        || {
            format!(
                "another browser's take {}, still found {}, own take {}",
                other.is_some(),
                found.is_some(),
                own.is_some()
            )
        },
    )
}

async fn login_expired<S: Logins>(s: &S, now: i64) -> Outcome {
    let (state, r) = login(now, 10)?;
    s.insert_login(&state, &r, now).await.map_err(err)?;
    let at = r.expires_at;
    let found = s.find_login(&state, at).await.map_err(err)?;
    let taken = s
        .take_login(&state, &r.binding_hash, at)
        .await
        .map_err(err)?;
    // Still stored (so the reads above filtered it out, not a purge).
    let before = s.find_login(&state, at - 1).await.map_err(err)?;
    ensure(
        found.is_none() && taken.is_none() && before.is_some(),
        || {
            format!(
                "at its expiry: found {}, taken {}; a second before: found {}",
                found.is_some(),
                taken.is_some(),
                before.is_some()
            )
        },
    )
}

/// A hand-off registered, sealed and confirmed at `now`: its token hash.
async fn confirmed_handoff<S: Handoffs>(s: &S, now: i64) -> Result<String, String> {
    let token_hash = fresh()?;
    let binding = HandoffBinding::generate().map_err(err)?;
    let confirm = ConfirmToken::generate().map_err(err)?;
    s.register_handoff(&token_hash, &binding, now + FETCH_TTL_SECS, now)
        .await
        .map_err(err)?;
    let was_sealed = s
        .seal_handoff(&token_hash, &binding, &sealed("h"), &confirm, now)
        .await
        .map_err(err)?;
    let to_confirm = s.handoff_to_confirm(&confirm, now).await.map_err(err)?;
    let confirmed = s
        .confirm_handoff(&confirm, &binding, now)
        .await
        .map_err(err)?;
    ensure(was_sealed && to_confirm.is_some() && confirmed, || {
        format!(
            "sealed {was_sealed}, found to confirm {}, confirmed {confirmed}",
            to_confirm.is_some()
        )
    })?;
    Ok(token_hash)
}

async fn handoff_collect_once<S: Handoffs>(s: &S, now: i64) -> Outcome {
    let token_hash = confirmed_handoff(s, now).await?;
    let (x, y) = both(
        s.collect_handoff(&token_hash, now),
        s.collect_handoff(&token_hash, now),
    )
    .await;
    let (x, y) = (x.map_err(err)?, y.map_err(err)?);
    let later = s.collect_handoff(&token_hash, now).await.map_err(err)?;
    let row = s.handoff(&token_hash, now).await.map_err(err)?;
    let wiped = row
        .as_ref()
        .is_some_and(|(r, sealed)| r.collected && sealed.is_none());
    ensure(x != y && !later && wiped, || {
        format!("two collections answered {x} and {y}, a later one {later}, row wiped {wiped}")
    })
}

async fn handoff_expired<S: Handoffs>(s: &S, now: i64) -> Outcome {
    let token_hash = confirmed_handoff(s, now).await?;
    let at = now + FETCH_TTL_SECS;
    let found = s.handoff(&token_hash, at).await.map_err(err)?;
    let collected = s.collect_handoff(&token_hash, at).await.map_err(err)?;
    let before = s.handoff(&token_hash, at - 1).await.map_err(err)?;
    let intact = before
        .as_ref()
        .is_some_and(|(r, sealed)| !r.collected && sealed.is_some());
    ensure(found.is_none() && !collected && intact, || {
        format!(
            "at its expiry: found {}, collected {collected}; a second before: intact {intact}",
            found.is_some()
        )
    })
}

/// A code issued at `now`, valid for 60 s: its hash.
async fn issued_code<S: Codes>(s: &S, now: i64) -> Result<String, String> {
    let code_hash = fresh()?;
    let r = CodeRecord {
        provider: provider().as_str().to_string(),
        redirect_uri: "http://127.0.0.1/conformance".into(),
        code_challenge: None,
        expires_at: now + 60,
    };
    s.insert_code(&code_hash, &r, &sealed("c"), now)
        .await
        .map_err(err)?;
    Ok(code_hash)
}

async fn code_concurrent_spends<S: Codes>(s: &S, now: i64) -> Outcome {
    let code_hash = issued_code(s, now).await?;
    let (x, y) = both(
        s.redeem_code(&code_hash, now),
        s.redeem_code(&code_hash, now),
    )
    .await;
    let mut counts = [x.map_err(err)?, y.map_err(err)?];
    counts.sort();
    ensure(counts == [Some(1), Some(2)], || {
        format!("two spends counted {counts:?}")
    })
}

async fn code_expired<S: Codes>(s: &S, now: i64) -> Outcome {
    let code_hash = issued_code(s, now).await?;
    let spent = s.redeem_code(&code_hash, now + 60).await.map_err(err)?;
    let row = s.code(&code_hash).await.map_err(err)?;
    let before = s.redeem_code(&code_hash, now + 59).await.map_err(err)?;
    ensure(
        spent.is_none() && row.is_some() && before == Some(1),
        || {
            format!(
            "at its expiry: spent {spent:?}, row read for the refusal {}; a second before: {before:?}",
            row.is_some()
        )
        },
    )
}

/// A device login pending at `now` (10 minutes) and approved: its hash.
async fn approved_device<S: Devices>(s: &S, now: i64) -> Result<String, String> {
    let device_code_hash = fresh()?;
    let r = DeviceRecord {
        provider: provider().as_str().to_string(),
        status: DeviceStatus::Pending,
        interval: 5,
        last_poll_at: None,
        expires_at: now + 600,
        requested_from: None,
    };
    let user_code_hash = fresh()?;
    let inserted = s
        .insert_device(&device_code_hash, &user_code_hash, &r, now)
        .await
        .map_err(err)?;
    let pending = s
        .pending_device_by_user_code(&user_code_hash, now)
        .await
        .map_err(err)?;
    let approved = s
        .approve_device(&device_code_hash, &sealed("d"), now)
        .await
        .map_err(err)?;
    ensure(
        inserted && pending.is_some_and(|(h, _)| h == device_code_hash) && approved,
        || format!("inserted {inserted}, approved {approved}"),
    )?;
    Ok(device_code_hash)
}

async fn device_concurrent_collections<S: Devices>(s: &S, now: i64) -> Outcome {
    let hash = approved_device(s, now).await?;
    let (x, y) = both(
        s.take_approved_device(&hash, now),
        s.take_approved_device(&hash, now),
    )
    .await;
    let got: Vec<Sealed> = [x.map_err(err)?, y.map_err(err)?]
        .into_iter()
        .flatten()
        .collect();
    let status = s.device(&hash).await.map_err(err)?.map(|d| d.status);
    ensure(
        got == [sealed("d")] && status == Some(DeviceStatus::Collected),
        || {
            format!(
                "{} of 2 collections got the answer; status {status:?}",
                got.len()
            )
        },
    )
}

async fn device_expired<S: Devices>(s: &S, now: i64) -> Outcome {
    let hash = approved_device(s, now).await?;
    let late = s
        .take_approved_device(&hash, now + 600)
        .await
        .map_err(err)?;
    let before = s
        .take_approved_device(&hash, now + 599)
        .await
        .map_err(err)?;
    ensure(late.is_none() && before.is_some(), || {
        format!(
            "at its expiry: collected {}; a second before: {}",
            late.is_some(),
            before.is_some()
        )
    })
}

async fn purge_expired_only<S: Logins + Codes + Expiry>(s: &S, now: i64) -> Outcome {
    let (short, r_short) = login(now, 10)?;
    let (long, r_long) = login(now, 600)?;
    s.insert_login(&short, &r_short, now).await.map_err(err)?;
    s.insert_login(&long, &r_long, now).await.map_err(err)?;
    let code_short = issued_code(s, now - 50).await?;
    let code_long = issued_code(s, now).await?;
    let at = now + 10;
    let logins = s.purge_expired(ShortLived::Logins, at).await.map_err(err)?;
    let codes = s.purge_expired(ShortLived::Codes, at).await.map_err(err)?;
    // Read as of `now`, when every one of them was live: only the purge
    // can have removed one.
    let short_gone = s.find_login(&short, now).await.map_err(err)?.is_none();
    let long_kept = s.find_login(&long, now).await.map_err(err)?.is_some();
    let code_gone = s.code(&code_short).await.map_err(err)?.is_none();
    let code_kept = s.code(&code_long).await.map_err(err)?.is_some();
    ensure(
        logins >= 1 && codes >= 1 && short_gone && long_kept && code_gone && code_kept,
        || {
            format!(
                "purged {logins} logins, {codes} codes; expired login gone {short_gone}, \
                 live one kept {long_kept}; expired code gone {code_gone}, live one kept {code_kept}"
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::storage::memory::MemoryStore;

    /// Runs a future that never waits on anything outside it (memory).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    const NOW: i64 = 1_000_000_000;

    fn failed(checks: &[Check]) -> Vec<&'static str> {
        checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn the_memory_store_keeps_the_whole_contract() {
        let store = MemoryStore::new();
        let checks = block_on(run(&store, &store, Shard::FIRST, NOW));
        for c in &checks {
            println!(
                "{} {}: {}",
                if c.passed { "pass" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(names, CHECKS, "every named check ran, in order");
        assert_eq!(failed(&checks), Vec::<&str>::new());
    }

    #[test]
    fn a_store_whose_writes_ignore_the_version_fails_the_cas_checks() {
        let store = MemoryStore::broken_cas();
        let checks = block_on(run(&store, &store, Shard::FIRST, NOW));
        for c in checks.iter().filter(|c| !c.passed) {
            println!("FAIL {}: {}", c.name, c.detail);
        }
        assert_eq!(
            failed(&checks),
            [
                "grant: CAS write with a stale version changes nothing",
                "grant: CAS replace with a stale version changes nothing",
            ]
        );
    }

    #[test]
    fn both_polls_two_futures_to_their_ends() {
        assert_eq!(block_on(both(async { 1 }, async { "b" })), (1, "b"));
    }
}
