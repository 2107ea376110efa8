//! D1 access: the only code that writes SQL. Every statement is prepared with
//! bound parameters. D1 failures become `StorageUnavailable` (503, retryable).

use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, Env};

use crate::error::BrokerError;
use crate::login::LoginRecord;
use crate::refresh::Status;
use crate::seal::Sealed;

const UNAVAILABLE: BrokerError = BrokerError::StorageUnavailable;

pub struct Db(D1Database);

/// A `grants` row (ciphertext only; see schema.sql).
#[derive(Deserialize, Debug, Clone)]
pub struct GrantRow {
    pub key_hash: String,
    pub provider: String,
    pub key_version: u32,
    pub nonce: String,
    pub ciphertext: String,
    pub version: i64,
    pub status: String,
    pub lease_until: i64,
}

impl GrantRow {
    pub fn sealed(&self) -> Sealed {
        Sealed {
            key_version: self.key_version,
            nonce: self.nonce.clone(),
            ciphertext: self.ciphertext.clone(),
        }
    }
}

/// A `fetch_tokens` row.
#[derive(Deserialize)]
pub struct FetchRow {
    pub nonce: Option<String>,
    pub ciphertext: Option<String>,
    pub collected: i64,
}

#[derive(Deserialize)]
struct LoginRow {
    provider: String,
    binding_hash: String,
    token_version: u8,
    fetch_token_hash: Option<String>,
    expires_at: i64,
}

fn num(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

impl Db {
    pub fn open(env: &Env) -> Result<Db, BrokerError> {
        env.d1("DB")
            .map(Db)
            .map_err(|_| BrokerError::Misconfigured {
                what: "the D1 binding DB is missing",
            })
    }

    /// Runs `sql` with `args` after deleting the expired rows of `table`, in one
    /// batch (so expired single-use rows never pile up).
    async fn insert_after_gc(
        &self,
        table: &str,
        now: i64,
        sql: &str,
        args: &[JsValue],
    ) -> Result<(), BrokerError> {
        let gc = self
            .0
            .prepare(format!("DELETE FROM {table} WHERE expires_at <= ?1"))
            .bind(&[num(now)])
            .map_err(|_| UNAVAILABLE)?;
        let insert = self.0.prepare(sql).bind(args).map_err(|_| UNAVAILABLE)?;
        self.0
            .batch(vec![gc, insert])
            .await
            .map_err(|_| UNAVAILABLE)?;
        Ok(())
    }

    /// Stores a started login and drops expired ones.
    pub async fn insert_login(
        &self,
        state_hash: &str,
        r: &LoginRecord,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.insert_after_gc(
            "login_states",
            now,
            "INSERT INTO login_states (state_hash, provider, binding_hash, token_version, \
             fetch_token_hash, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                state_hash.into(),
                r.provider.as_str().into(),
                r.binding_hash.as_str().into(),
                num(r.token_version.into()),
                r.fetch_token_hash
                    .as_deref()
                    .map_or(JsValue::NULL, JsValue::from),
                num(r.expires_at),
            ],
        )
        .await
    }

    /// Deletes and returns a login: a state can be consumed exactly once.
    pub async fn take_login(&self, state_hash: &str) -> Result<Option<LoginRecord>, BrokerError> {
        let row: Option<LoginRow> = self
            .0
            .prepare(
                "DELETE FROM login_states WHERE state_hash = ?1 RETURNING provider, binding_hash, \
                 token_version, fetch_token_hash, expires_at",
            )
            .bind(&[state_hash.into()])
            .map_err(|_| UNAVAILABLE)?
            .first(None)
            .await
            .map_err(|_| UNAVAILABLE)?;
        Ok(row.map(|r| LoginRecord {
            provider: r.provider,
            binding_hash: r.binding_hash,
            token_version: r.token_version,
            fetch_token_hash: r.fetch_token_hash,
            expires_at: r.expires_at,
        }))
    }

    pub async fn insert_grant(
        &self,
        key_hash: &str,
        provider: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.changes(
            "INSERT INTO grants (key_hash, provider, key_version, nonce, ciphertext, version, \
             status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 1, 'active', ?6, ?6)",
            &[
                key_hash.into(),
                provider.into(),
                num(sealed.key_version.into()),
                sealed.nonce.as_str().into(),
                sealed.ciphertext.as_str().into(),
                num(now),
            ],
        )
        .await?;
        Ok(())
    }

    /// Finds the grant under any of the authid's key hashes (one per server-secret version).
    pub async fn find_grant(
        &self,
        hashes: &[(u32, String)],
    ) -> Result<Option<GrantRow>, BrokerError> {
        let placeholders: Vec<String> = (1..=hashes.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT key_hash, provider, key_version, nonce, ciphertext, version, status, \
             lease_until FROM grants WHERE key_hash IN ({}) LIMIT 1",
            placeholders.join(", ")
        );
        let args: Vec<JsValue> = hashes.iter().map(|(_, h)| h.as_str().into()).collect();
        self.0
            .prepare(sql)
            .bind(&args)
            .map_err(|_| UNAVAILABLE)?
            .first(None)
            .await
            .map_err(|_| UNAVAILABLE)
    }

    /// Runs one write statement and returns how many rows it changed.
    async fn changes(&self, sql: &str, args: &[JsValue]) -> Result<usize, BrokerError> {
        let result = self
            .0
            .prepare(sql)
            .bind(args)
            .map_err(|_| UNAVAILABLE)?
            .run()
            .await
            .map_err(|_| UNAVAILABLE)?;
        Ok(result
            .meta()
            .ok()
            .flatten()
            .and_then(|m| m.changes)
            .unwrap_or(0))
    }

    /// Claims the refresh lease of the row as read: succeeds only if nobody holds
    /// an unexpired lease and nobody wrote the row since (`version`).
    pub async fn claim_lease(
        &self,
        row: &GrantRow,
        lease_id: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "UPDATE grants SET lease_until = ?1, lease_id = ?2 WHERE key_hash = ?3 \
                 AND version = ?4 AND lease_until <= ?5 AND status = 'active'",
                &[
                    num(lease_until),
                    lease_id.into(),
                    row.key_hash.as_str().into(),
                    num(row.version),
                    num(now),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Writes the re-sealed grant and releases the lease, compare-and-swap on
    /// (lease, version): a request that lost its lease can never overwrite a newer grant.
    pub async fn write_refreshed(
        &self,
        old: &GrantRow,
        lease_id: &str,
        key_hash: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "UPDATE grants SET key_hash = ?1, key_version = ?2, nonce = ?3, ciphertext = ?4, \
                 version = version + 1, lease_until = 0, lease_id = NULL, updated_at = ?5 \
                 WHERE key_hash = ?6 AND lease_id = ?7 AND version = ?8",
                &[
                    key_hash.into(),
                    num(sealed.key_version.into()),
                    sealed.nonce.as_str().into(),
                    sealed.ciphertext.as_str().into(),
                    num(now),
                    old.key_hash.as_str().into(),
                    lease_id.into(),
                    num(old.version),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Releases a lease without writing the grant (upstream failed); optionally
    /// marks the grant as needing re-authorization.
    pub async fn release_lease(
        &self,
        row: &GrantRow,
        lease_id: &str,
        status: Status,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.changes(
            "UPDATE grants SET lease_until = 0, lease_id = NULL, status = ?1, updated_at = ?2 \
             WHERE key_hash = ?3 AND lease_id = ?4",
            &[
                status.as_str().into(),
                num(now),
                row.key_hash.as_str().into(),
                lease_id.into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Registers a UI fetch token (idempotent) and drops expired ones.
    pub async fn register_fetch_token(
        &self,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.insert_after_gc(
            "fetch_tokens",
            now,
            "INSERT INTO fetch_tokens (token_hash, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (token_hash) DO NOTHING",
            &[token_hash.into(), num(expires_at)],
        )
        .await
    }

    /// Leaves a sealed authid for the UI (unless it was already collected).
    pub async fn complete_fetch_token(
        &self,
        token_hash: &str,
        nonce: &str,
        ciphertext: &str,
        expires_at: i64,
    ) -> Result<(), BrokerError> {
        self.changes(
            "INSERT INTO fetch_tokens (token_hash, nonce, ciphertext, expires_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token_hash) DO UPDATE SET \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext WHERE collected = 0",
            &[
                token_hash.into(),
                nonce.into(),
                ciphertext.into(),
                num(expires_at),
            ],
        )
        .await?;
        Ok(())
    }

    /// The fetch token's row: (nonce, ciphertext, collected), if unexpired.
    pub async fn fetch_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<FetchRow>, BrokerError> {
        self.0
            .prepare(
                "SELECT nonce, ciphertext, collected FROM fetch_tokens \
                 WHERE token_hash = ?1 AND expires_at > ?2",
            )
            .bind(&[token_hash.into(), num(now)])
            .map_err(|_| UNAVAILABLE)?
            .first(None)
            .await
            .map_err(|_| UNAVAILABLE)
    }

    /// Marks a pending authid collected and erases it; true for exactly one caller.
    pub async fn collect_fetch_token(&self, token_hash: &str) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "UPDATE fetch_tokens SET nonce = NULL, ciphertext = NULL, collected = 1 \
                 WHERE token_hash = ?1 AND ciphertext IS NOT NULL AND collected = 0",
                &[token_hash.into()],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn delete_grant(&self, key_hash: &str) -> Result<(), BrokerError> {
        self.changes("DELETE FROM grants WHERE key_hash = ?1", &[key_hash.into()])
            .await?;
        Ok(())
    }
}
