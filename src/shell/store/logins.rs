//! `login_states`: logins in progress, keyed by the hash of their state
//! parameter, single use, expiring after `login::LOGIN_TTL_SECS`.

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::error::BrokerError;
use crate::login::{sha256_hex, LoginEnding, LoginRecord};
use crate::secret::StateToken;

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

impl Db {
    /// Stores a started login and drops expired ones.
    pub async fn insert_login(
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

    /// Reads a login without consuming it (the callback checks it first).
    pub async fn find_login(&self, state: &StateToken) -> Result<Option<LoginRecord>, BrokerError> {
        let row: Option<LoginRow> = self
            .first(
                "find_login",
                "SELECT provider, binding_hash, token_version, fetch_token_hash, expires_at, ending \
                 FROM login_states WHERE state_hash = ?1",
                &[sha256_hex(state.secret()).into()],
            )
            .await?;
        Ok(row.map(LoginRow::record))
    }

    /// Deletes and returns a login, only if it is still bound to the browser
    /// whose cookie hashes to `binding_hash`: a state can be consumed exactly
    /// once, and never by a request carrying another browser's cookie.
    pub async fn take_login(
        &self,
        state: &StateToken,
        binding_hash: &str,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        let row: Option<LoginRow> = self
            .first(
                "take_login",
                "DELETE FROM login_states WHERE state_hash = ?1 AND binding_hash = ?2 \
                 RETURNING provider, binding_hash, token_version, fetch_token_hash, expires_at, ending",
                &[sha256_hex(state.secret()).into(), binding_hash.into()],
            )
            .await?;
        Ok(row.map(LoginRow::record))
    }
}
