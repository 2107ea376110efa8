//! `login_states`: logins in progress, keyed by the hash of their state
//! parameter, single use, expiring after `login::LOGIN_TTL_SECS`: every read
//! treats an expired row as absent (the Cron Trigger deletes it, `purge`).

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::digest::sha256_hex;
use crate::error::BrokerError;
use crate::login::{LoginEnding, LoginRecord};
use crate::secret::StateToken;
use crate::storage::Logins;

#[derive(Deserialize)]
struct LoginRow {
    provider: String,
    binding_hash: String,
    token_version: u8,
    fetch_token_hash: Option<String>,
    expires_at: i64,
    ending: Option<String>,
}

impl LoginRow {
    fn record(self) -> LoginRecord {
        LoginRecord {
            provider: self.provider,
            binding_hash: self.binding_hash,
            token_version: self.token_version,
            fetch_token_hash: self.fetch_token_hash,
            expires_at: self.expires_at,
            ending: LoginEnding::from_column(self.ending.as_deref()),
        }
    }
}

impl Logins for Db {
    /// Stores a started login and drops expired ones.
    async fn insert_login(
        &self,
        state: &StateToken,
        r: &LoginRecord,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.insert_after_gc(
            "insert_login",
            "login_states",
            now,
            "INSERT INTO login_states (state_hash, provider, binding_hash, token_version, \
             fetch_token_hash, expires_at, ending) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &[
                sha256_hex(state.secret()).into(),
                r.provider.as_str().into(),
                r.binding_hash.as_str().into(),
                num(r.token_version.into()),
                r.fetch_token_hash
                    .as_deref()
                    .map_or(JsValue::NULL, JsValue::from),
                num(r.expires_at),
                r.ending.to_column()?.map_or(JsValue::NULL, JsValue::from),
            ],
        )
        .await
    }

    /// Reads an unexpired login without consuming it (the callback checks it
    /// first). An expired row, waiting for the purge, is absent.
    async fn find_login(
        &self,
        state: &StateToken,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        let row: Option<LoginRow> = self
            .first(
                "find_login",
                "SELECT provider, binding_hash, token_version, fetch_token_hash, expires_at, ending \
                 FROM login_states WHERE state_hash = ?1 AND expires_at > ?2",
                &[sha256_hex(state.secret()).into(), num(now)],
            )
            .await?;
        Ok(row.map(LoginRow::record))
    }

    /// Deletes and returns a login, only if it is still bound to the browser
    /// whose cookie hashes to `binding_hash` and has not expired (a login that
    /// expired since [`Logins::find_login`] is not consumed: the purge takes it):
    /// a state can be consumed exactly once, and never by a request carrying
    /// another browser's cookie.
    async fn take_login(
        &self,
        state: &StateToken,
        binding_hash: &str,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        let row: Option<LoginRow> = self
            .first(
                "take_login",
                "DELETE FROM login_states WHERE state_hash = ?1 AND binding_hash = ?2 \
                 AND expires_at > ?3 \
                 RETURNING provider, binding_hash, token_version, fetch_token_hash, expires_at, ending",
                &[
                    sha256_hex(state.secret()).into(),
                    binding_hash.into(),
                    num(now),
                ],
            )
            .await?;
        Ok(row.map(LoginRow::record))
    }
}
