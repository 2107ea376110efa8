//! `authorization_codes`: the one-time codes of the OAuth 2.0 authorization
//! endpoint (`crate::authorize`), keyed by `authorize::code_hash`, holding the
//! authid only sealed (`seal::Pending::AuthorizationCode`). A code is deleted
//! on its first presentation, whatever the answer: single use by construction.

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::authorize::CodeRecord;
use crate::error::BrokerError;
use crate::seal::Sealed;

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

impl Db {
    /// Stores an issued code and drops expired ones.
    pub async fn insert_code(
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

    /// Deletes and returns the code: of two presentations, one gets the row.
    pub async fn take_code(
        &self,
        code_hash: &str,
    ) -> Result<Option<(CodeRecord, Sealed)>, BrokerError> {
        let row: Option<CodeRow> = self
            .first(
                "take_code",
                "DELETE FROM authorization_codes WHERE code_hash = ?1 RETURNING provider, \
                 redirect_uri, code_challenge, key_version, nonce, ciphertext, expires_at",
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
}
