//! `fetch_tokens`: Duplicati's old-UI hand-off. A row is registered when the UI
//! opens the broker with its token, completed with the sealed authid when the
//! login it carried finishes, and collected once by `/fetch`. Keyed by
//! `handoff::token_hash`; the authid is stored only sealed (`seal.rs`).

use serde::Deserialize;

use super::{num, Db};
use crate::error::BrokerError;
use crate::seal::Sealed;

/// A `fetch_tokens` row.
#[derive(Deserialize)]
struct HandoffRow {
    key_version: Option<u32>,
    nonce: Option<String>,
    ciphertext: Option<String>,
    collected: i64,
}

/// Where a hand-off stands.
pub enum Handoff {
    /// Registered, the login has not finished.
    Pending,
    /// The sealed authid waits for `/fetch`.
    Ready(Sealed),
    /// Already handed out.
    Collected,
}

impl Db {
    /// Registers a UI token (idempotent) and drops expired ones.
    pub async fn register_handoff(
        &self,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.insert_after_gc(
            "register_handoff",
            "fetch_tokens",
            now,
            "INSERT INTO fetch_tokens (token_hash, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (token_hash) DO NOTHING",
            &[token_hash.into(), num(expires_at)],
        )
        .await
    }

    /// Leaves a sealed authid for the UI (unless it was already collected).
    pub async fn complete_handoff(
        &self,
        token_hash: &str,
        sealed: &Sealed,
        expires_at: i64,
    ) -> Result<(), BrokerError> {
        self.changes(
            "complete_handoff",
            "INSERT INTO fetch_tokens (token_hash, key_version, nonce, ciphertext, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (token_hash) DO UPDATE SET \
             key_version = excluded.key_version, nonce = excluded.nonce, \
             ciphertext = excluded.ciphertext WHERE collected = 0",
            &[
                token_hash.into(),
                num(sealed.key_version.into()),
                sealed.nonce.as_str().into(),
                sealed.ciphertext.as_str().into(),
                num(expires_at),
            ],
        )
        .await?;
        Ok(())
    }

    /// The unexpired hand-off under `token_hash`, if any.
    pub async fn handoff(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<Handoff>, BrokerError> {
        let row: Option<HandoffRow> = self
            .first(
                "handoff",
                "SELECT key_version, nonce, ciphertext, collected FROM fetch_tokens \
                 WHERE token_hash = ?1 AND expires_at > ?2",
                &[token_hash.into(), num(now)],
            )
            .await?;
        Ok(row.map(|r| match (r.key_version, r.nonce, r.ciphertext) {
            (Some(key_version), Some(nonce), Some(ciphertext)) => Handoff::Ready(Sealed {
                key_version,
                nonce,
                ciphertext,
            }),
            // Sealed before hand-offs recorded their key version (at most
            // FETCH_TTL_SECS old at deploy time): unreadable, so gone.
            (None, Some(_), Some(_)) => Handoff::Collected,
            _ if r.collected == 1 => Handoff::Collected,
            _ => Handoff::Pending,
        }))
    }

    /// Marks a ready hand-off collected and erases the sealed authid; true for
    /// exactly one caller (the `WHERE collected = 0` makes it single use).
    pub async fn collect_handoff(&self, token_hash: &str) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "collect_handoff",
                "UPDATE fetch_tokens SET key_version = NULL, nonce = NULL, ciphertext = NULL, \
                 collected = 1 WHERE token_hash = ?1 AND ciphertext IS NOT NULL AND collected = 0",
                &[token_hash.into()],
            )
            .await?;
        Ok(n == 1)
    }
}
