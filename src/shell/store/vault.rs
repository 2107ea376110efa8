//! The vault: stored grants behind the server keys. Handlers name a grant by
//! its authid (`vault.grant(authid)`, which picks the authid's shard:
//! `super::shards`) and speak `Grant` and `Opened`; key
//! hashes, key versions, nonces and ciphertext never leave this file (the
//! construction is `crate::seal`, the layout `docs/storage.md`). A
//! [`StoredGrant`] is also the D1 side of the single-flight protocol
//! (`crate::refresh::Grants`): the lease and compare-and-swap statements.

use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::authid::AuthId;
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::ids::{KeyHash, LeaseId, ProviderId};
use crate::refresh::{first_version, Grants, Opened, ReadFrom, Status, LEASE_SECS};
use crate::seal::{Sealed, ServerKeys};

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
    /// Standby (successor) rows: the row they replace, and its version when
    /// they copied its grant.
    predecessor: Option<String>,
    predecessor_version: Option<i64>,
}

/// Deletes every pending (standby) successor of the row under `?1`.
const DELETE_PENDING_SUCCESSORS: &str =
    "DELETE FROM grants WHERE status = 'standby' AND predecessor = ?1";

/// How many standby successors of one grant, copied at its current version,
/// are kept (two at once is the case that matters: two refreshes at Akeeba's
/// door at the same moment); minting one more deletes the oldest.
const MAX_PENDING_SUCCESSORS: i64 = 4;

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
             lease_until, predecessor, predecessor_version FROM grants WHERE key_hash IN ({}) \
             LIMIT 1",
            placeholders.join(", ")
        );
        let args: Vec<JsValue> = self.hashes.iter().map(|(_, h)| h.as_str().into()).collect();
        self.db().first_from(from, "find_grant", &sql, &args).await
    }

    /// Whether a grant is stored under this authid (asked of the primary); a
    /// tombstone (a revoked or replaced authid) is none.
    pub async fn exists(&self) -> Result<bool, BrokerError> {
        Ok(self
            .find(ReadFrom::Primary)
            .await?
            .is_some_and(|r| !is_tombstone(&r.status)))
    }

    /// Whether this authid has any row, a tombstone included: a revoked
    /// oauth-handler authid is never moved in again (`shell::migration`).
    pub async fn known(&self) -> Result<bool, BrokerError> {
        Ok(self.find(ReadFrom::Primary).await?.is_some())
    }

    /// Seals `grant` under the current server-secret version.
    fn seal(&self, provider: &ProviderId, grant: &Grant) -> Result<(KeyHash, Sealed), BrokerError> {
        Ok(self
            .keys
            .seal(&self.authid, provider.as_str(), &grant.to_bytes())?)
    }

    /// Stores a new grant under a freshly minted authid. A row already there
    /// would mean a keyid collision (2^-128): refused, never overwritten.
    pub async fn insert(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<(), BrokerError> {
        if self.insert_if_absent(provider, grant, now).await? {
            Ok(())
        } else {
            Err(BrokerError::internal("a new authid's key hash is taken"))
        }
    }

    /// Stores a new grant unless one is stored under this authid's current
    /// key hash already (two first refreshes moving the same grant: the
    /// second finds the first's row); a tombstone is overwritten (an operator
    /// importing a revoked authid again), starting at a fresh version.
    /// Whether this call stored it.
    pub async fn insert_if_absent(
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
    pub async fn replace(
        &self,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        self.reseal("replace_grant", read, provider, grant, now)
            .await
    }

    /// Seals `grant` for `provider` over the row read as `read`: compare-and-
    /// swap on the version alone, bumping it, with the lease freed and the
    /// status active. Re-seals under the current server-secret version, which
    /// re-keys a row found under an older one. Whether the row was still as read.
    async fn reseal(
        &self,
        statement: &'static str,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let (key_hash, sealed) = self.seal(provider, grant)?;
        let n = self
            .db()
            .changes(
                statement,
                "UPDATE grants SET key_hash = ?1, provider = ?2, key_version = ?3, nonce = ?4, \
                 ciphertext = ?5, version = version + 1, status = 'active', lease_until = 0, \
                 lease_id = NULL, updated_at = ?6 WHERE key_hash = ?7 AND version = ?8",
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

    /// Revokes the grant read as `read`: deletes its row, or, with
    /// `tombstone`, keeps its key hash as a `revoked` tombstone (nonce and
    /// ciphertext wiped) so that an authid the operator's oauth-handler also
    /// holds is not moved in again by its next refresh (it answers like an
    /// unknown one). Its pending (standby) successors go with it either way:
    /// a revoked grant lives on in no other row. A revocation whose answer D1
    /// lost is read back, so that its success is not reported as a failure.
    pub async fn revoke(&self, read: &Opened, tombstone: bool) -> Result<(), BrokerError> {
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

    /// Stores `next` as a pending successor of the grant read as `read`
    /// (`docs/storage.md` "Successors"): a standby row with a copy of the
    /// grant as of `read.version`, in one transaction that also deletes the
    /// grant's standby successors that can no longer take over (copied at an
    /// older version) and the oldest beyond [`MAX_PENDING_SUCCESSORS`].
    /// Successors minted at the same version stay valid side by side until
    /// one of them is used. False (and nothing stored or deleted) if the
    /// grant changed since it was read: the copy would be stale.
    pub async fn mint_successor(
        &self,
        read: &Opened,
        next: &StoredGrant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let (next_hash, sealed) = next.seal(&read.provider, &read.grant)?;
        let this: JsValue = read.key_hash.as_str().into();
        let version = num(read.version);
        let insert: &[JsValue] = &[
            next_hash.as_str().into(),
            read.provider.as_str().into(),
            num(sealed.key_version.into()),
            sealed.nonce.into(),
            sealed.ciphertext.into(),
            num(now),
            num(first_version()?),
            this.clone(),
            version.clone(),
        ];
        let changed = self
            .db()
            .batch(
                "mint_successor",
                &[
                    (
                        "DELETE FROM grants WHERE status = 'standby' AND predecessor = ?1 \
                         AND EXISTS (SELECT 1 FROM grants WHERE key_hash = ?1 AND version = ?2) \
                         AND (predecessor_version != ?2 OR key_hash NOT IN (SELECT key_hash \
                         FROM grants WHERE status = 'standby' AND predecessor = ?1 \
                         AND predecessor_version = ?2 \
                         ORDER BY created_at DESC, key_hash LIMIT ?3))",
                        &[this, version, num(MAX_PENDING_SUCCESSORS - 1)],
                    ),
                    (
                        "INSERT INTO grants (key_hash, provider, key_version, nonce, ciphertext, \
                         version, status, created_at, updated_at, predecessor, \
                         predecessor_version) SELECT ?1, ?2, ?3, ?4, ?5, ?7, 'standby', ?6, ?6, \
                         ?8, ?9 WHERE EXISTS \
                         (SELECT 1 FROM grants WHERE key_hash = ?8 AND version = ?9)",
                        insert,
                    ),
                ],
            )
            .await?;
        Ok(changed.get(1) == Some(&1))
    }

    /// The first use of a standby (successor) row, in one transaction: it
    /// becomes active only if its predecessor is unchanged since the copy,
    /// is no tombstone and is not being refreshed; and then, only then, the
    /// predecessor becomes a `replaced` tombstone (ciphertext wiped) and so do
    /// the predecessor's other standby successors (siblings minted by a
    /// concurrent refresh). So exactly one row may ever refresh the grant.
    async fn take_over(&self, row: &GrantRow, now: i64) -> Result<(), BrokerError> {
        let (Some(predecessor), Some(copied)) = (&row.predecessor, row.predecessor_version) else {
            return Ok(());
        };
        let args: &[JsValue] = &[
            predecessor.as_str().into(),
            num(copied),
            row.key_hash.as_str().into(),
            num(now),
        ];
        // D1 refuses more bindings than the statement's highest `?N`.
        let mine: &[JsValue] = &[
            predecessor.as_str().into(),
            num(copied),
            row.key_hash.as_str().into(),
        ];
        // Steps 2 and 3 act only in the transaction whose step 1 activated
        // this row: it names its predecessor until step 4.
        const TAKEN_OVER: &str = "EXISTS (SELECT 1 FROM grants WHERE key_hash = ?3 \
             AND status = 'active' AND predecessor = ?1)";
        let replaced = format!(
            "UPDATE grants SET status = 'replaced', nonce = '', ciphertext = '', \
             lease_until = 0, lease_id = NULL, predecessor = NULL, \
             predecessor_version = NULL, version = version + 1, updated_at = ?4 \
             WHERE key_hash = ?1 AND version = ?2 AND {TAKEN_OVER}"
        );
        let siblings = format!(
            "UPDATE grants SET status = 'replaced', nonce = '', ciphertext = '', \
             predecessor = NULL, predecessor_version = NULL, version = version + 1, \
             updated_at = ?4 WHERE status = 'standby' AND predecessor = ?1 \
             AND key_hash != ?3 AND {TAKEN_OVER}"
        );
        self.db()
            .batch(
                "take_over",
                &[
                    (
                        "UPDATE grants SET status = 'active', version = version + 1, \
                         updated_at = ?4 WHERE key_hash = ?3 AND status = 'standby' \
                         AND predecessor = ?1 AND predecessor_version = ?2 \
                         AND EXISTS (SELECT 1 FROM grants WHERE key_hash = ?1 AND version = ?2 \
                         AND lease_until <= ?4 AND status NOT IN ('standby', 'replaced', 'revoked'))",
                        args,
                    ),
                    (replaced.as_str(), args),
                    (siblings.as_str(), args),
                    (
                        "UPDATE grants SET predecessor = NULL, predecessor_version = NULL \
                         WHERE key_hash = ?3 AND status = 'active' AND ?1 = predecessor",
                        mine,
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
        self.open_row(row.clone())?;
        self.take_over(&row, crate::shell::clock::now()).await?;
        let now = self
            .find(ReadFrom::Primary)
            .await?
            .ok_or(BrokerError::UnknownAuthId)?;
        match now.status.as_str() {
            "revoked" => Err(BrokerError::UnknownAuthId),
            "standby" | "replaced" => Err(BrokerError::AuthIdReplaced),
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
        self.reseal("write_refreshed", read, &read.provider, grant, now)
            .await
    }

    async fn release(
        &self,
        read: &Opened,
        lease: &LeaseId,
        status: Status,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.db()
            .changes(
                "release_lease",
                "UPDATE grants SET lease_until = 0, lease_id = NULL, status = ?1, updated_at = ?2 \
                 WHERE key_hash = ?3 AND lease_id = ?4",
                &[
                    status.as_str().into(),
                    num(now),
                    read.key_hash.as_str().into(),
                    lease.as_str().into(),
                ],
            )
            .await?;
        Ok(())
    }
}
