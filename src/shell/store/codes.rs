//! `authorization_codes`: the one-time codes of the OAuth 2.0 authorization
//! endpoint (`crate::authorize`), keyed by `authorize::code_hash`, holding the
//! first answer (authid and first access token, `crate::redeem::Issuance`)
//! only sealed (`seal::Pending::AuthorizationCode`). A presentation is read
//! first and counted only once it has passed every check, by one atomic
//! `UPDATE … RETURNING`, so exactly one successful presentation sees itself as
//! the first; the row stays until it expires (or the purge removes it), so
//! that a replay can still open the authid and revoke it
//! (`crate::authorize::REPLAYED`).

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::authorize::CodeRecord;
use crate::error::BrokerError;
use crate::ids::ClaimId;
use crate::seal::Sealed;
use crate::storage::Codes;

#[derive(Deserialize)]
struct CodeRow {
    provider: String,
    redirect_uri: String,
    code_challenge: Option<String>,
    key_version: u32,
    nonce: String,
    ciphertext: String,
    expires_at: i64,
}

impl Codes for Db {
    /// Stores an issued code and drops expired ones.
    async fn insert_code(
        &self,
        code_hash: &str,
        r: &CodeRecord,
        sealed: &Sealed,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.insert_after_gc(
            "insert_code",
            "authorization_codes",
            now,
            "INSERT INTO authorization_codes (code_hash, provider, redirect_uri, code_challenge, \
             key_version, nonce, ciphertext, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &[
                code_hash.into(),
                r.provider.as_str().into(),
                r.redirect_uri.as_str().into(),
                r.code_challenge
                    .as_deref()
                    .map_or(JsValue::NULL, JsValue::from),
                num(sealed.key_version.into()),
                sealed.nonce.as_str().into(),
                sealed.ciphertext.as_str().into(),
                num(r.expires_at),
            ],
        )
        .await
    }

    /// The code's row, as issued; counts nothing (a refused presentation
    /// must not spend the code). An expired row is read too, so that it is
    /// refused as expired (`authorize::check_redemption`), never used.
    async fn code(&self, code_hash: &str) -> Result<Option<(CodeRecord, Sealed)>, BrokerError> {
        let row: Option<CodeRow> = self
            .first(
                "code",
                "SELECT provider, redirect_uri, code_challenge, key_version, nonce, ciphertext, \
                 expires_at FROM authorization_codes WHERE code_hash = ?1",
                &[code_hash.into()],
            )
            .await?;
        Ok(row.map(|r| {
            (
                CodeRecord {
                    provider: r.provider,
                    redirect_uri: r.redirect_uri,
                    code_challenge: r.code_challenge,
                    expires_at: r.expires_at,
                },
                Sealed {
                    key_version: r.key_version,
                    nonce: r.nonce,
                    ciphertext: r.ciphertext,
                },
            )
        }))
    }

    /// Counts a checked presentation and returns the count, this one included:
    /// of two, exactly one sees 1 (`authorize::claimed`). `None` once the code
    /// has expired. The first spend writes its claim id (`redeemed_by`), so a
    /// spend whose answer D1 lost is still this presentation's: the broker's
    /// own failure never turns the client's retry into a replay.
    async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Option<i64>, BrokerError> {
        #[derive(Deserialize)]
        struct Count {
            redeemed: i64,
        }
        let claim = ClaimId::generate()?;
        let spent: Result<Option<Count>, BrokerError> = self
            .first(
                "redeem_code",
                "UPDATE authorization_codes SET redeemed = redeemed + 1, \
                 redeemed_by = COALESCE(redeemed_by, ?3) \
                 WHERE code_hash = ?1 AND expires_at > ?2 RETURNING redeemed",
                &[code_hash.into(), num(now), claim.as_str().into()],
            )
            .await;
        match spent {
            Ok(row) => Ok(row.map(|r| r.redeemed)),
            Err(e) => {
                self.claim_stands(
                    e,
                    "code_claim",
                    "SELECT redeemed_by AS claim FROM authorization_codes WHERE code_hash = ?1",
                    code_hash,
                    &claim,
                )
                .await?;
                // This presentation's spend was the first.
                Ok(Some(1))
            }
        }
    }
}
