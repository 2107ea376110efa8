//! The vault: stored grants behind the server keys. Handlers name a grant by
//! its authid (`vault.grant(authid)`, which picks the authid's shard:
//! `super::shards`) and speak `Grant` and `Opened`; key
//! hashes, key versions, nonces and ciphertext never leave this file (the
//! construction is `crate::seal`, the layout `docs/storage.md`). A
//! [`StoredGrant`] is also the D1 side of the single-flight protocol
//! (`crate::refresh::Grants`): the lease and compare-and-swap statements; and
//! of the storage contract's `GrantStore` (with [`Vault`] as its
//! `GrantVault`), which it implements directly (`docs/storage.md`).

use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::JsValue;

use worker::Env;

use super::{num, D1Work, Db};
use crate::authid::{parse_authid, AuthId, ParsedAuthId};
use crate::config::Config;
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::ids::{KeyHash, LeaseId, ProviderId};
use crate::refresh::{first_version, Grants, Opened, ReadFrom, Status, LEASE_SECS};
use crate::seal::{Sealed, ServerKeys};
use crate::shell::faults::Faults;
use crate::status::Facts;
use crate::storage::{GrantStore, GrantVault};

/// A `grants` row as read (ciphertext only; see schema.sql).
#[derive(Deserialize, Clone)]
struct GrantRow {
    key_hash: String,
    provider: String,
    key_version: u32,
    nonce: String,
    ciphertext: String,
    version: i64,
    status: String,
    lease_until: i64,
    /// Standby (successor) rows: the key hash of the row they replace.
    predecessor: Option<String>,
    created_at: i64,
    last_refresh_at: Option<i64>,
    last_outcome: Option<String>,
    last_ok_at: Option<i64>,
}

/// Deletes every pending (standby) successor of the row under `?1`.
const DELETE_PENDING_SUCCESSORS: &str =
    "DELETE FROM grants WHERE status = 'standby' AND predecessor = ?1";

/// What a standby (successor) row seals under its own authid: the authid it
/// succeeds (`docs/storage.md` "Successors").
#[derive(serde::Serialize, serde::Deserialize)]
struct Standby {
    successor_of: String,
}

/// How many standby successors of one grant are kept (two at once is the
/// case that matters: two refreshes at Akeeba's door at the same moment);
/// minting one more deletes the oldest.
const MAX_PENDING_SUCCESSORS: i64 = 4;

/// Why a grant is re-sealed over its row, and so what the same statement
/// records besides (`StoredGrant::reseal`).
#[derive(Clone, Copy)]
enum Reseal {
    /// Another copy of the same grant (an operator's import): nothing.
    Replaced,
    /// An upstream refresh: its time and outcome (`ok`), and the last success.
    Refreshed,
    /// A new login of the same account: the last success (the idle clock
    /// starts again); the last upstream refresh stays as it was.
    Reauthorized,
}

/// Whether a row's status marks a tombstone: an authid revoked (kept so an
/// oauth-handler authid is not moved in again) or replaced by its successor.
fn is_tombstone(status: &str) -> bool {
    matches!(status, "revoked" | "replaced")
}

/// One authid's grant in the vault. It owns what it needs (shared, not
/// copied), so a refresh of it can outlive the request that started it.
#[derive(Clone)]
pub struct StoredGrant {
    db: Db,
    keys: Rc<ServerKeys>,
    authid: Rc<AuthId>,
    /// (version, key hash), current version first.
    hashes: Vec<(u32, KeyHash)>,
}

impl StoredGrant {
    /// The grant under `authid` in `db` (its shard's). Its key hashes under
    /// every server-secret version are computed here, once.
    pub(super) fn new(db: Db, keys: Rc<ServerKeys>, authid: AuthId) -> StoredGrant {
        StoredGrant {
            db,
            hashes: keys.lookup_hashes(&authid),
            keys,
            authid: Rc::new(authid),
        }
    }

    /// The per-grant rate-limit key: the current key hash (never the authid
    /// itself, which must not reach the limiter's storage).
    pub fn limit_key(&self) -> String {
        self.hashes
            .first()
            .map(|(_, h)| h.to_string())
            .unwrap_or_default()
    }

    fn db(&self) -> &Db {
        &self.db
    }

    /// The row under any of the key hashes (a row sealed before a rotation is
    /// still found), unopened, read from `from` (`crate::refresh::trust`
    /// decides which reads may be a replica's).
    async fn find(&self, from: ReadFrom) -> Result<Option<GrantRow>, BrokerError> {
        let placeholders: Vec<String> = (1..=self.hashes.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT key_hash, provider, key_version, nonce, ciphertext, version, status, \
             lease_until, predecessor, created_at, last_refresh_at, last_outcome, last_ok_at \
             FROM grants WHERE key_hash IN ({}) LIMIT 1",
            placeholders.join(", ")
        );
        let args: Vec<JsValue> = self.hashes.iter().map(|(_, h)| h.as_str().into()).collect();
        self.db().first_from(from, "find_grant", &sql, &args).await
    }

    /// Seals `grant` under the current server-secret version.
    fn seal(&self, provider: &ProviderId, grant: &Grant) -> Result<(KeyHash, Sealed), BrokerError> {
        Ok(self
            .keys
            .seal(&self.authid, provider.as_str(), &grant.to_bytes())?)
    }

    /// What the grant's holder may learn about it (`crate::status`), with
    /// the grant as opened: opened with this authid first (a standby
    /// successor takes over, as on any use), so only the authid's holder
    /// learns anything.
    pub async fn facts(&self) -> Result<(Facts, Opened), BrokerError> {
        let row = self.find(ReadFrom::Primary).await?;
        let row = match row {
            Some(r) if !matches!(r.status.as_str(), "standby" | "replaced" | "revoked") => r,
            // Tombstones and standby rows answer as `open` does (a standby
            // row takes over first), then are read again.
            _ => {
                self.open(ReadFrom::Primary).await?;
                self.find(ReadFrom::Primary)
                    .await?
                    .ok_or(BrokerError::UnknownAuthId)?
            }
        };
        let facts = Facts {
            provider: row.provider.clone(),
            status: Status::parse(&row.status),
            created_at: row.created_at,
            last_refresh_at: row.last_refresh_at,
            last_outcome: row.last_outcome.clone(),
            last_ok_at: row.last_ok_at,
        };
        Ok((facts, self.open_row(row)?))
    }

    /// Seals `grant` for `provider` over the row read as `read`: compare-and-
    /// swap on the version alone, bumping it, with the lease freed and the
    /// status active. Re-seals under the current server-secret version, which
    /// re-keys a row found under an older one. `why` says what else the same
    /// statement records. Whether the row was still as read.
    async fn reseal(
        &self,
        statement: &'static str,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
        why: Reseal,
    ) -> Result<bool, BrokerError> {
        let (key_hash, sealed) = self.seal(provider, grant)?;
        let records = match why {
            Reseal::Replaced => "",
            Reseal::Refreshed => ", last_refresh_at = ?6, last_outcome = 'ok', last_ok_at = ?6",
            Reseal::Reauthorized => ", last_ok_at = ?6",
        };
        let sql = format!(
            "UPDATE grants SET key_hash = ?1, provider = ?2, key_version = ?3, nonce = ?4, \
             ciphertext = ?5, version = version + 1, status = 'active', lease_until = 0, \
             lease_id = NULL, updated_at = ?6{records} WHERE key_hash = ?7 AND version = ?8"
        );
        let n = self
            .db()
            .changes(
                statement,
                &sql,
                &[
                    key_hash.as_str().into(),
                    provider.as_str().into(),
                    num(sealed.key_version.into()),
                    sealed.nonce.into(),
                    sealed.ciphertext.into(),
                    num(now),
                    read.key_hash.as_str().into(),
                    num(read.version),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Stores `next` as a pending successor of the grant read as `read`
    /// (`docs/storage.md` "Successors"): a standby row that seals, under
    /// `next`'s own key, this authid, so that its first use opens the grant
    /// as it is *then* (however often it was refreshed, its refresh token
    /// rotated, meanwhile), never a copy that could go stale. Successors
    /// minted side by side (two refreshes at once) all stay valid until one
    /// is used; minting one more than [`MAX_PENDING_SUCCESSORS`] deletes the
    /// oldest. False (and nothing stored) unless the grant is live.
    pub async fn mint_successor(
        &self,
        read: &Opened,
        next: &StoredGrant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let payload = serde_json::to_vec(&Standby {
            successor_of: self.authid.expose(),
        })
        .map_err(|_| BrokerError::internal("a standby payload did not serialize"))?;
        let (next_hash, sealed) = next
            .keys
            .seal(&next.authid, read.provider.as_str(), &payload)?;
        let this: JsValue = read.key_hash.as_str().into();
        let insert: &[JsValue] = &[
            next_hash.as_str().into(),
            read.provider.as_str().into(),
            num(sealed.key_version.into()),
            sealed.nonce.into(),
            sealed.ciphertext.into(),
            num(now),
            num(first_version()?),
            this.clone(),
            num(read.version),
        ];
        let changed = self
            .db()
            .batch(
                "mint_successor",
                &[
                    (
                        "DELETE FROM grants WHERE status = 'standby' AND predecessor = ?1 \
                         AND key_hash NOT IN (SELECT key_hash FROM grants \
                         WHERE status = 'standby' AND predecessor = ?1 \
                         ORDER BY created_at DESC, key_hash LIMIT ?2)",
                        &[this, num(MAX_PENDING_SUCCESSORS - 1)],
                    ),
                    (
                        "INSERT INTO grants (key_hash, provider, key_version, nonce, ciphertext, \
                         version, status, created_at, updated_at, predecessor, \
                         predecessor_version) SELECT ?1, ?2, ?3, ?4, ?5, ?7, 'standby', ?6, ?6, \
                         ?8, ?9 WHERE EXISTS (SELECT 1 FROM grants WHERE key_hash = ?8 \
                         AND status IN ('active', 'reauth_required'))",
                        insert,
                    ),
                ],
            )
            .await?;
        Ok(changed.get(1) == Some(&1))
    }

    /// The authid a standby row (read as `row`, found under this authid)
    /// succeeds: opening it proves this authid, not only its key id.
    fn open_standby(&self, row: &GrantRow) -> Result<AuthId, BrokerError> {
        let sealed = Sealed {
            key_version: row.key_version,
            nonce: row.nonce.clone(),
            ciphertext: row.ciphertext.clone(),
        };
        let key_hash = KeyHash::new(row.key_hash.clone());
        let plain = self
            .keys
            .open(&self.authid, &row.provider, &key_hash, &sealed)?;
        let standby: Standby =
            serde_json::from_slice(&plain).map_err(|_| BrokerError::UnknownAuthId)?;
        match parse_authid(&standby.successor_of) {
            Ok(ParsedAuthId::V1(authid)) => Ok(authid),
            _ => Err(BrokerError::UnknownAuthId),
        }
    }

    /// The first use of a standby row `row` (successor of `predecessor`): its
    /// predecessor's grant, read now and opened with the authid the standby
    /// row sealed, is sealed into this row in one transaction that (1) makes
    /// this row live only if the predecessor is still as read, live, and not
    /// being refreshed; then, only in the transaction that did (1), (2) turns
    /// the predecessor into a `replaced` tombstone (ciphertext wiped) and (3)
    /// its other standby successors too, and (4) clears this row's link. So
    /// exactly one row may ever refresh the grant. A predecessor mid-refresh
    /// is [`BrokerError::RefreshPending`] (retryable): its answer may rotate
    /// the very token this row is about to hold.
    async fn take_over(
        &self,
        row: &GrantRow,
        predecessor: AuthId,
        now: i64,
    ) -> Result<(), BrokerError> {
        let Some(recorded) = &row.predecessor else {
            return Err(BrokerError::UnknownAuthId);
        };
        let before = StoredGrant::new(self.db.clone(), self.keys.clone(), predecessor);
        let Some(found) = before.find(ReadFrom::Primary).await? else {
            // Revoked (its standby rows go with it) between the reads.
            return Err(BrokerError::UnknownAuthId);
        };
        match found.status.as_str() {
            // A sibling was used first: this row was replaced with it.
            "replaced" | "standby" => return Ok(()),
            "revoked" => return Err(BrokerError::UnknownAuthId),
            _ if found.lease_until > now => return Err(BrokerError::RefreshPending),
            _ => {}
        }
        let status = found.status.clone();
        let read = before.open_row(found)?;
        let (key_hash, sealed) = self.seal(&read.provider, &read.grant)?;
        // `?1`–`?6` for the statements that need no more (D1 refuses more
        // bindings than a statement's highest `?N`); `?7`–`?10` for (1).
        let mut args: Vec<JsValue> = vec![
            read.key_hash.as_str().into(),
            num(read.version),
            row.key_hash.as_str().into(),
            num(now),
            recorded.as_str().into(),
            key_hash.as_str().into(),
        ];
        let linked = args.clone();
        args.extend([
            num(sealed.key_version.into()),
            sealed.nonce.into(),
            sealed.ciphertext.into(),
            status.as_str().into(),
        ]);
        // Steps 2–4 act only in the transaction whose step 1 made this row
        // live: it names its predecessor until step 4.
        const TAKEN_OVER: &str = "EXISTS (SELECT 1 FROM grants WHERE key_hash = ?6 \
             AND status != 'standby' AND predecessor = ?5)";
        let replaced = format!(
            "UPDATE grants SET status = 'replaced', nonce = '', ciphertext = '', \
             lease_until = 0, lease_id = NULL, version = version + 1, updated_at = ?4 \
             WHERE key_hash = ?1 AND version = ?2 AND {TAKEN_OVER}"
        );
        let siblings = format!(
            "UPDATE grants SET status = 'replaced', nonce = '', ciphertext = '', \
             predecessor = NULL, predecessor_version = NULL, version = version + 1, \
             updated_at = ?4 WHERE status = 'standby' AND predecessor = ?5 \
             AND key_hash != ?6 AND {TAKEN_OVER}"
        );
        self.db()
            .batch(
                "take_over",
                &[
                    (
                        "UPDATE grants SET key_hash = ?6, key_version = ?7, nonce = ?8, \
                         ciphertext = ?9, status = ?10, version = version + 1, updated_at = ?4 \
                         WHERE key_hash = ?3 AND status = 'standby' AND predecessor = ?5 \
                         AND EXISTS (SELECT 1 FROM grants WHERE key_hash = ?1 AND version = ?2 \
                         AND lease_until <= ?4 AND status IN ('active', 'reauth_required'))",
                        &args,
                    ),
                    (replaced.as_str(), &linked),
                    (siblings.as_str(), &linked),
                    (
                        "UPDATE grants SET predecessor = NULL, predecessor_version = NULL \
                         WHERE key_hash = ?6 AND predecessor = ?5 AND status != 'standby'",
                        &linked,
                    ),
                ],
            )
            .await?;
        Ok(())
    }

    /// Opens `row` with this authid. Unknown, wrong, tampered and moved all
    /// answer the same [`BrokerError::UnknownAuthId`].
    fn open_row(&self, row: GrantRow) -> Result<Opened, BrokerError> {
        let sealed = Sealed {
            key_version: row.key_version,
            nonce: row.nonce,
            ciphertext: row.ciphertext,
        };
        let key_hash = KeyHash::new(row.key_hash);
        let plain = self
            .keys
            .open(&self.authid, &row.provider, &key_hash, &sealed)?;
        Ok(Opened {
            grant: Grant::from_bytes(&plain)?,
            key_hash,
            version: row.version,
            provider: ProviderId::new(row.provider),
            status: Status::parse(&row.status),
            lease_until: row.lease_until,
        })
    }
}

impl Grants for StoredGrant {
    /// Finds and opens the grant. Unknown, wrong, tampered and moved all
    /// answer the same [`BrokerError::UnknownAuthId`].
    ///
    /// A `replaced` row (its successor was used; its ciphertext is wiped, so
    /// only its key hash matched) answers [`BrokerError::AuthIdReplaced`]. A
    /// `standby` row, opened with this authid, takes over from its
    /// predecessor first ([`StoredGrant::take_over`]) and is read again on
    /// the primary: active from then on, or refused as replaced.
    async fn open(&self, from: ReadFrom) -> Result<Opened, BrokerError> {
        let row = self.find(from).await?.ok_or(BrokerError::UnknownAuthId)?;
        match row.status.as_str() {
            "replaced" => return Err(BrokerError::AuthIdReplaced),
            "revoked" => return Err(BrokerError::UnknownAuthId),
            "standby" => {}
            _ => return self.open_row(row),
        }
        // Proves the authid (not only its key id) before anything is written.
        let predecessor = self.open_standby(&row)?;
        self.take_over(&row, predecessor, crate::shell::clock::now())
            .await?;
        let now = self.find(ReadFrom::Primary).await?;
        let now = now.ok_or(BrokerError::UnknownAuthId)?;
        match now.status.as_str() {
            "revoked" => Err(BrokerError::UnknownAuthId),
            "replaced" => Err(BrokerError::AuthIdReplaced),
            // The predecessor moved on between the read and the takeover (a
            // refresh): nothing changed; the client tries again.
            "standby" => Err(BrokerError::RefreshPending),
            _ => self.open_row(now),
        }
    }

    /// Won only if nobody holds an unexpired lease and nobody wrote the row
    /// since it was read (`version`), checked through `meta.changes`.
    async fn claim(&self, read: &Opened, now: i64) -> Result<Option<LeaseId>, BrokerError> {
        let lease = LeaseId::generate()?;
        let n = self
            .db()
            .changes(
                "claim_lease",
                "UPDATE grants SET lease_until = ?1, lease_id = ?2 WHERE key_hash = ?3 \
                 AND version = ?4 AND lease_until <= ?5 AND status = 'active'",
                &[
                    num(now + LEASE_SECS),
                    lease.as_str().into(),
                    read.key_hash.as_str().into(),
                    num(read.version),
                    num(now),
                ],
            )
            .await?;
        Ok((n == 1).then_some(lease))
    }

    /// Compare-and-swap on the version alone (not on the lease, a clock): an
    /// answer the provider already issued is kept even if the lease ran out,
    /// and no newer write is ever overwritten. `status = 'active'`: a fresh
    /// grant beats an `invalid_grant` someone else got meanwhile with the token
    /// this answer replaced. Re-seals under the current server-secret version,
    /// which re-keys a row found under an older one.
    async fn write(
        &self,
        read: &Opened,
        _lease: &LeaseId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        self.reseal(
            "write_refreshed",
            read,
            &read.provider,
            grant,
            now,
            Reseal::Refreshed,
        )
        .await
    }

    /// Also records the refresh's outcome and time in the same statement
    /// (`last_outcome`, `last_refresh_at`: the doctor's 24-hour counts).
    async fn release(
        &self,
        read: &Opened,
        lease: &LeaseId,
        status: Status,
        outcome: &'static str,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.db()
            .changes(
                "release_lease",
                "UPDATE grants SET lease_until = 0, lease_id = NULL, status = ?1, updated_at = ?2, \
                 last_refresh_at = ?2, last_outcome = ?5 WHERE key_hash = ?3 AND lease_id = ?4",
                &[
                    status.as_str().into(),
                    num(now),
                    read.key_hash.as_str().into(),
                    lease.as_str().into(),
                    outcome.into(),
                ],
            )
            .await?;
        Ok(())
    }
}

impl GrantStore for StoredGrant {
    /// Stores a new grant unless one is stored under this authid's current
    /// key hash already (two first refreshes moving the same grant: the
    /// second finds the first's row); a tombstone is overwritten (an operator
    /// importing a revoked authid again), starting at a fresh version.
    /// Whether this call stored it.
    async fn insert_if_absent(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let (key_hash, sealed) = self.seal(provider, grant)?;
        let n = self
            .db()
            .changes(
                "insert_grant_if_absent",
                "INSERT INTO grants (key_hash, provider, key_version, nonce, ciphertext, \
                 version, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?7, 'active', ?6, ?6) \
                 ON CONFLICT (key_hash) DO UPDATE SET provider = excluded.provider, \
                 key_version = excluded.key_version, nonce = excluded.nonce, \
                 ciphertext = excluded.ciphertext, version = excluded.version, \
                 status = 'active', lease_until = 0, lease_id = NULL, successor = NULL, \
                 predecessor = NULL, predecessor_version = NULL, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at \
                 WHERE grants.status IN ('revoked', 'replaced')",
                &[
                    key_hash.as_str().into(),
                    provider.as_str().into(),
                    num(sealed.key_version.into()),
                    sealed.nonce.into(),
                    sealed.ciphertext.into(),
                    num(now),
                    num(first_version()?),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Replaces the grant read as `read` (opened with this very authid) with
    /// `grant` for `provider`: compare-and-swap on the version, so a refresh
    /// in flight cannot write its older result over it, and the lease and
    /// status start afresh. Whether the row was still as read.
    async fn replace(
        &self,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        self.reseal(
            "replace_grant",
            read,
            provider,
            grant,
            now,
            Reseal::Replaced,
        )
        .await
    }

    /// Re-authorization in place (`crate::reauthorize`): the grant read as
    /// `read` becomes `grant` (the new login's, same account), active, its
    /// "needs re-authorization" memo cleared, the lease freed and the version
    /// bumped, by compare-and-swap on the version: a refresh in flight then
    /// finds the row changed and keeps this newer grant, and its late
    /// `invalid_grant` release no longer matches the lease. Whether the row
    /// was still as read.
    async fn reauthorize(
        &self,
        read: &Opened,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        self.reseal(
            "reauthorize_grant",
            read,
            &read.provider,
            grant,
            now,
            Reseal::Reauthorized,
        )
        .await
    }

    /// Revokes the grant read as `read`: deletes its row, or, with
    /// `tombstone`, keeps its key hash as a `revoked` tombstone (nonce and
    /// ciphertext wiped) so that an authid the operator's oauth-handler also
    /// holds is not moved in again by its next refresh (it answers like an
    /// unknown one). Its pending (standby) successors go with it either way:
    /// a revoked grant lives on in no other row. A revocation whose answer D1
    /// lost is read back, so that its success is not reported as a failure.
    async fn revoke(&self, read: &Opened, tombstone: bool) -> Result<(), BrokerError> {
        let key: &[JsValue] = &[read.key_hash.as_str().into()];
        let this = match tombstone {
            true => {
                "UPDATE grants SET status = 'revoked', nonce = '', ciphertext = '', \
                 lease_until = 0, lease_id = NULL, \
                 version = version + 1 WHERE key_hash = ?1"
            }
            false => "DELETE FROM grants WHERE key_hash = ?1",
        };
        let revoked = self
            .db()
            .batch(
                "revoke_grant",
                &[(DELETE_PENDING_SUCCESSORS, key), (this, key)],
            )
            .await;
        match revoked {
            Ok(_) => Ok(()),
            // D1 may have committed it and lost only the answer: the row read
            // back gone (or a `revoked` tombstone) is this revocation, done.
            Err(e) => match self.find(ReadFrom::Primary).await {
                Ok(None) => Ok(()),
                Ok(Some(row)) if tombstone && row.status == "revoked" => Ok(()),
                _ => Err(e),
            },
        }
    }

    /// Whether a grant is stored under this authid (asked of the primary); a
    /// tombstone (a revoked or replaced authid) is none.
    async fn exists(&self) -> Result<bool, BrokerError> {
        Ok(self
            .find(ReadFrom::Primary)
            .await?
            .is_some_and(|r| !is_tombstone(&r.status)))
    }

    /// Whether this authid has any row, a tombstone included: a revoked
    /// oauth-handler authid is never moved in again (`shell::handler_move`).
    async fn known(&self) -> Result<bool, BrokerError> {
        Ok(self.find(ReadFrom::Primary).await?.is_some())
    }
}

/// The grants of every shard, opened with the server keys.
pub struct Vault {
    env: Env,
    cfg: Rc<Config>,
    work: Rc<D1Work>,
    keys: Rc<ServerKeys>,
    faults: Faults,
}

impl Vault {
    pub fn new(
        env: Env,
        cfg: Rc<Config>,
        work: Rc<D1Work>,
        keys: Rc<ServerKeys>,
        faults: Faults,
    ) -> Vault {
        Vault {
            env,
            cfg,
            work,
            keys,
            faults,
        }
    }
}

impl GrantVault for Vault {
    type Grant = StoredGrant;
    /// The grant stored (or to be stored) under `authid`, on the shard it
    /// names. A shard the configuration lacks answers like an unknown authid
    /// (logged as such, never the authid): an authid from another
    /// deployment, or a shard removed against the rule.
    fn grant(&self, authid: AuthId) -> Result<StoredGrant, BrokerError> {
        let Some(db) = super::shards::open(
            &self.env,
            &self.cfg,
            authid.shard(),
            &self.work,
            self.faults.clone(),
        )?
        else {
            crate::shell::log::warn(
                "unknown_shard",
                serde_json::json!({ "what": "an authid names a shard not in D1_SHARDS" }),
            );
            return Err(BrokerError::UnknownAuthId);
        };
        Ok(StoredGrant::new(db, self.keys.clone(), authid))
    }
}
