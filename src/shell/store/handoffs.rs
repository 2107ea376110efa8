//! `fetch_tokens`: Duplicati's old-UI hand-off. A row is registered when the UI
//! opens the broker with its token (bound to that browser), sealed with the
//! authid when the login it carried finishes, confirmed when the user says so
//! on the result page, and collected once by `/fetch`. Keyed by
//! `handoff::token_hash`; the authid is stored only sealed (`seal.rs`), the
//! binding cookie and the confirmation token only hashed. Every statement
//! but the insert treats an expired row as absent (`expires_at > now`; the
//! Cron Trigger deletes it, `purge`). Every decision is
//! `crate::handoff`'s; the statements here repeat its conditions so that each
//! write is atomic (a row that changed in between is simply not matched).

use serde::Deserialize;

use super::{num, Db};
use crate::error::BrokerError;
use crate::handoff::{
    ConfirmToken, HandoffBinding, Registration, CONFIRM_TTL_SECS, FETCH_TTL_SECS,
};
use crate::ids::ClaimId;
use crate::seal::Sealed;
use crate::storage::Handoffs;

/// A `fetch_tokens` row.
#[derive(Deserialize)]
struct HandoffRow {
    binding_hash: Option<String>,
    key_version: Option<u32>,
    nonce: Option<String>,
    ciphertext: Option<String>,
    confirmed: i64,
    confirm_expires_at: Option<i64>,
    collected: i64,
}

const COLUMNS: &str =
    "binding_hash, key_version, nonce, ciphertext, confirmed, confirm_expires_at, collected";

impl HandoffRow {
    /// The row as the core sees it, and its sealed authid if it has a readable one.
    fn split(self) -> (Registration, Option<Sealed>) {
        let sealed = match (self.key_version, self.nonce, self.ciphertext.clone()) {
            (Some(key_version), Some(nonce), Some(ciphertext)) => Some(Sealed {
                key_version,
                nonce,
                ciphertext,
            }),
            _ => None,
        };
        // Sealed before hand-offs recorded their key version (at most
        // FETCH_TTL_SECS old at that deploy): unreadable, so gone.
        let unreadable = self.ciphertext.is_some() && sealed.is_none();
        let registration = Registration {
            binding_hash: self.binding_hash,
            sealed: sealed.is_some(),
            confirmed: self.confirmed == 1,
            collected: self.collected == 1 || unreadable,
            confirm_expires_at: self.confirm_expires_at,
        };
        (registration, sealed)
    }
}

impl Handoffs for Db {
    /// Registers a UI token for the browser `binding` (a no-op when the token
    /// is already registered, by whichever browser) and drops expired ones.
    /// Read the row back with [`Handoffs::handoff`] to learn whose it is.
    async fn register_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.insert_after_gc(
            "register_handoff",
            "fetch_tokens",
            now,
            "INSERT INTO fetch_tokens (token_hash, binding_hash, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (token_hash) DO NOTHING",
            &[
                token_hash.into(),
                binding.hash().as_str().into(),
                num(expires_at),
            ],
        )
        .await
    }

    /// Leaves a sealed, unconfirmed authid for the UI, answerable by `confirm`
    /// for [`CONFIRM_TTL_SECS`] (the row itself then lives [`FETCH_TTL_SECS`]
    /// more). Only on the row the same browser registered and not yet confirmed
    /// or collected (a second login replaces an unconfirmed authid, and its
    /// confirmation token). True if left.
    async fn seal_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        sealed: &Sealed,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "seal_handoff",
                "UPDATE fetch_tokens SET key_version = ?3, nonce = ?4, ciphertext = ?5, \
                 confirm_hash = ?6, confirm_expires_at = ?7, expires_at = ?8 \
                 WHERE token_hash = ?1 AND binding_hash = ?2 AND confirmed = 0 \
                 AND collected = 0 AND expires_at > ?9",
                &[
                    token_hash.into(),
                    binding.hash().as_str().into(),
                    num(sealed.key_version.into()),
                    sealed.nonce.as_str().into(),
                    sealed.ciphertext.as_str().into(),
                    confirm.hash().as_str().into(),
                    num(now + CONFIRM_TTL_SECS),
                    num(now + FETCH_TTL_SECS),
                    num(now),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// The unexpired hand-off under `token_hash`, if any.
    async fn handoff(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(Registration, Option<Sealed>)>, BrokerError> {
        let row: Option<HandoffRow> = self
            .first(
                "handoff",
                &format!(
                    "SELECT {COLUMNS} FROM fetch_tokens WHERE token_hash = ?1 AND expires_at > ?2"
                ),
                &[token_hash.into(), num(now)],
            )
            .await?;
        Ok(row.map(HandoffRow::split))
    }

    /// The unexpired hand-off waiting for the confirmation `confirm`, if any.
    async fn handoff_to_confirm(
        &self,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<Option<Registration>, BrokerError> {
        let row: Option<HandoffRow> = self
            .first(
                "handoff_to_confirm",
                &format!(
                    "SELECT {COLUMNS} FROM fetch_tokens WHERE confirm_hash = ?1 AND expires_at > ?2"
                ),
                &[confirm.hash().as_str().into(), num(now)],
            )
            .await?;
        Ok(row.map(|r| r.split().0))
    }

    /// Confirms the hand-off `confirm` names for the browser `binding`, once:
    /// the confirmation token is erased as it is used. True for exactly one caller.
    async fn confirm_handoff(
        &self,
        confirm: &ConfirmToken,
        binding: &HandoffBinding,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "confirm_handoff",
                "UPDATE fetch_tokens SET confirmed = 1, confirm_hash = NULL, confirm_expires_at = NULL \
                 WHERE confirm_hash = ?1 AND binding_hash = ?2 AND confirm_expires_at > ?3 \
                 AND expires_at > ?3 AND ciphertext IS NOT NULL AND confirmed = 0 AND collected = 0",
                &[
                    confirm.hash().as_str().into(),
                    binding.hash().as_str().into(),
                    num(now),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Marks a confirmed, unexpired hand-off collected and erases the sealed
    /// authid; true for exactly one caller (the `WHERE collected = 0` makes it
    /// single use), never for a row that expired since it was read. The
    /// caller's claim id goes with it (`collected_by`), so a collection D1
    /// committed but whose answer it lost is still that caller's.
    async fn collect_handoff(&self, token_hash: &str, now: i64) -> Result<bool, BrokerError> {
        let claim = ClaimId::generate()?;
        let collected = self
            .changes(
                "collect_handoff",
                "UPDATE fetch_tokens SET key_version = NULL, nonce = NULL, ciphertext = NULL, \
                 collected = 1, collected_by = ?3 WHERE token_hash = ?1 \
                 AND ciphertext IS NOT NULL AND confirmed = 1 AND collected = 0 AND expires_at > ?2",
                &[token_hash.into(), num(now), claim.as_str().into()],
            )
            .await;
        match collected {
            Ok(n) => Ok(n == 1),
            Err(e) => {
                self.claim_stands(
                    e,
                    "handoff_claim",
                    "SELECT collected_by AS claim FROM fetch_tokens WHERE token_hash = ?1",
                    token_hash,
                    &claim,
                )
                .await?;
                Ok(true)
            }
        }
    }
}
