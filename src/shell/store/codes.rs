//! `authorization_codes`: the one-time codes of the OAuth 2.0 authorization
//! endpoint (`crate::authorize`), keyed by `authorize::code_hash`, holding the
//! authid only sealed (`seal::Pending::AuthorizationCode`). Every
//! presentation is counted by one atomic `UPDATE … RETURNING`, so exactly one
//! sees itself as the first; the row stays until it expires, so that a replay
//! can still open the authid and revoke it (`crate::authorize::REPLAYED`).

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
    presented: i64,
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

    /// Counts a presentation of the code and returns it: of two
    /// presentations, exactly one sees `presented == 1`.
    pub async fn take_code(
        &self,
        code_hash: &str,
    ) -> Result<Option<(CodeRecord, Sealed)>, BrokerError> {
        let row: Option<CodeRow> = self
            .first(
                "take_code",
                "UPDATE authorization_codes SET presented = presented + 1 WHERE code_hash = ?1 \
                 RETURNING provider, redirect_uri, code_challenge, key_version, nonce, \
                 ciphertext, expires_at, presented",
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
                    presented: r.presented,
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
