//! The D1 store under the core's storage contract (`crate::storage`): each
//! trait method is the statement this folder already sends (the handlers
//! call the same methods directly), so the contract's conformance checks
//! (`crate::storage::conformance`) run the very SQL the broker runs. How D1
//! gives each guarantee: `docs/storage.md`, "What a storage backend must
//! guarantee".
//!
//! The fault-injection build also answers `POST /__conformance` ([`answer`]):
//! the conformance checks against this shard-1 D1, as JSON, for
//! `tests/e2e/storage_contract.rs`. Never in the release build.

use super::purge::PURGES;
use super::vault::{StoredGrant, Vault};
use super::Db;
use crate::authid::AuthId;
use crate::authorize::CodeRecord;
use crate::device::DeviceRecord;
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::handoff::{ConfirmToken, HandoffBinding, Registration};
use crate::ids::ProviderId;
use crate::login::LoginRecord;
use crate::refresh::Opened;
use crate::seal::Sealed;
use crate::secret::StateToken;
use crate::storage::{
    Codes, Devices, Expiry, GrantStore, GrantVault, Handoffs, Logins, ShortLived,
};

impl GrantVault for Vault {
    type Grant = StoredGrant;
    fn grant(&self, authid: AuthId) -> Result<StoredGrant, BrokerError> {
        Vault::grant(self, authid)
    }
}

impl GrantStore for StoredGrant {
    async fn insert_if_absent(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        StoredGrant::insert_if_absent(self, provider, grant, now).await
    }

    async fn insert(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<(), BrokerError> {
        StoredGrant::insert(self, provider, grant, now).await
    }

    async fn replace(
        &self,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        StoredGrant::replace(self, read, provider, grant, now).await
    }

    async fn reauthorize(
        &self,
        read: &Opened,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError> {
        StoredGrant::reauthorize(self, read, grant, now).await
    }

    async fn revoke(&self, read: &Opened, tombstone: bool) -> Result<(), BrokerError> {
        StoredGrant::revoke(self, read, tombstone).await
    }

    async fn exists(&self) -> Result<bool, BrokerError> {
        StoredGrant::exists(self).await
    }

    async fn known(&self) -> Result<bool, BrokerError> {
        StoredGrant::known(self).await
    }
}

impl Logins for Db {
    async fn insert_login(
        &self,
        state: &StateToken,
        r: &LoginRecord,
        now: i64,
    ) -> Result<(), BrokerError> {
        Db::insert_login(self, state, r, now).await
    }

    async fn find_login(
        &self,
        state: &StateToken,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        Db::find_login(self, state, now).await
    }

    async fn take_login(
        &self,
        state: &StateToken,
        binding_hash: &str,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        Db::take_login(self, state, binding_hash, now).await
    }
}

impl Handoffs for Db {
    async fn register_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        Db::register_handoff(self, token_hash, binding, expires_at, now).await
    }

    async fn seal_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        sealed: &Sealed,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<bool, BrokerError> {
        Db::seal_handoff(self, token_hash, binding, sealed, confirm, now).await
    }

    async fn handoff(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(Registration, Option<Sealed>)>, BrokerError> {
        Db::handoff(self, token_hash, now).await
    }

    async fn handoff_to_confirm(
        &self,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<Option<Registration>, BrokerError> {
        Db::handoff_to_confirm(self, confirm, now).await
    }

    async fn confirm_handoff(
        &self,
        confirm: &ConfirmToken,
        binding: &HandoffBinding,
        now: i64,
    ) -> Result<bool, BrokerError> {
        Db::confirm_handoff(self, confirm, binding, now).await
    }

    async fn collect_handoff(&self, token_hash: &str, now: i64) -> Result<bool, BrokerError> {
        Db::collect_handoff(self, token_hash, now).await
    }
}

impl Codes for Db {
    async fn insert_code(
        &self,
        code_hash: &str,
        r: &CodeRecord,
        sealed: &Sealed,
        now: i64,
    ) -> Result<(), BrokerError> {
        Db::insert_code(self, code_hash, r, sealed, now).await
    }

    async fn code(&self, code_hash: &str) -> Result<Option<(CodeRecord, Sealed)>, BrokerError> {
        Db::code(self, code_hash).await
    }

    async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Option<i64>, BrokerError> {
        Db::redeem_code(self, code_hash, now).await
    }
}

impl Devices for Db {
    async fn insert_device(
        &self,
        device_code_hash: &str,
        user_code_hash: &str,
        r: &DeviceRecord,
        now: i64,
    ) -> Result<bool, BrokerError> {
        Db::insert_device(self, device_code_hash, user_code_hash, r, now).await
    }

    async fn device(&self, device_code_hash: &str) -> Result<Option<DeviceRecord>, BrokerError> {
        Db::device(self, device_code_hash).await
    }

    async fn pending_device_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<(String, DeviceRecord)>, BrokerError> {
        Db::pending_device_by_user_code(self, user_code_hash, now).await
    }

    async fn record_poll(
        &self,
        device_code_hash: &str,
        interval: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        Db::record_poll(self, device_code_hash, interval, now).await
    }

    async fn approve_device(
        &self,
        device_code_hash: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<bool, BrokerError> {
        Db::approve_device(self, device_code_hash, sealed, now).await
    }

    async fn deny_device(&self, device_code_hash: &str) -> Result<(), BrokerError> {
        Db::deny_device(self, device_code_hash).await
    }

    async fn take_approved_device(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<Option<Sealed>, BrokerError> {
        Db::take_approved_device(self, device_code_hash, now).await
    }
}

impl Expiry for Db {
    /// The Cron Trigger's statement for `table` ([`PURGES`]).
    async fn purge_expired(&self, table: ShortLived, now: i64) -> Result<usize, BrokerError> {
        let purge = PURGES
            .iter()
            .find(|p| p.table == table.table())
            .ok_or(BrokerError::internal("a short-lived table without a purge"))?;
        Db::purge_expired(self, purge, now).await
    }
}

#[cfg(feature = "fault-injection")]
pub use hook::{answer, asks};

/// `POST /__conformance` (fault-injection build only).
#[cfg(feature = "fault-injection")]
mod hook {
    use worker::{Context, Env, Request, Response};

    use crate::config::Config;
    use crate::ids::Shard;
    use crate::request::parse_params;
    use crate::route::Surface;
    use crate::shell::call::Call;
    use crate::shell::respond;
    use crate::storage::conformance::{self, Check};

    /// The path the hook answers (only with `POST`).
    pub const PATH: &str = "/__conformance";

    /// The clock the checks run at: 2001-09-09, before any real row's
    /// expiry, so that the purge check (at this time plus seconds) can only
    /// delete the rows the checks wrote (every key they write is random too).
    const NOW: i64 = 1_000_000_000;

    /// Whether `path` and `method` name the hook.
    pub fn asks(path: &str, method: crate::route::Method) -> bool {
        path == PATH && method == crate::route::Method::Post
    }

    /// Runs the conformance checks against shard 1's D1 (grants, logins,
    /// hand-offs, codes, device codes) and answers `{"checks":[{name,
    /// passed, detail}]}`.
    pub async fn answer(
        req: Request,
        env: Env,
        ctx: Context,
        origin: String,
    ) -> worker::Result<Response> {
        let cfg = Config::from_bindings(
            {
                let env = env.clone();
                move |name: &str| crate::shell::binding(&env, name)
            },
            origin,
            crate::shell::clock::now(),
        );
        let call = Call::new(req, env, ctx, cfg, parse_params(""));
        let checks: Result<Vec<Check>, _> = async {
            let (db, vault) = (call.db()?, call.vault()?);
            Ok(conformance::run(&vault, &db, Shard::FIRST, NOW).await)
        }
        .await;
        match checks {
            Ok(checks) => Response::from_json(&serde_json::json!({ "checks": checks })),
            Err(e) => respond::finish(Err(e), Surface::Api, false, None),
        }
    }
}
