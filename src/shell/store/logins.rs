//! `login_states`: logins in progress, keyed by the hash of their state
//! parameter, single use, expiring after `login::LOGIN_TTL_SECS`.

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::error::BrokerError;
use crate::login::{sha256_hex, LoginRecord};
use crate::secret::StateToken;

#[derive(Deserialize)]
struct LoginRow {
    provider: String,
    binding_hash: String,
    token_version: u8,
    fetch_token_hash: Option<String>,
    expires_at: i64,
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
             fetch_token_hash, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                sha256_hex(state.secret()).into(),
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
    pub async fn take_login(&self, state: &StateToken) -> Result<Option<LoginRecord>, BrokerError> {
        let row: Option<LoginRow> = self
            .first(
                "take_login",
                "DELETE FROM login_states WHERE state_hash = ?1 RETURNING provider, binding_hash, \
                 token_version, fetch_token_hash, expires_at",
                &[sha256_hex(state.secret()).into()],
            )
            .await?;
        Ok(row.map(|r| LoginRecord {
            provider: r.provider,
            binding_hash: r.binding_hash,
            token_version: r.token_version,
            fetch_token_hash: r.fetch_token_hash,
            expires_at: r.expires_at,
        }))
    }
}
