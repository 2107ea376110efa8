//! The storage contract in memory (native only): what the D1 statements of
//! `src/shell/store/` do, row by row, without SQL. Single-threaded, so every
//! method is atomic by construction; [`MemoryStore::broken_cas`] builds one
//! whose grant writes ignore the version, to prove that
//! [`super::conformance`] notices.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::{
    Codes, Devices, Expiry, GrantStore, GrantVault, Grants, Handoffs, Logins, Opened, ShortLived,
};
use crate::authid::AuthId;
use crate::authorize::CodeRecord;
use crate::device::{DeviceRecord, Status as DeviceStatus};
use crate::digest::sha256_hex;
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::handoff::{
    ConfirmToken, HandoffBinding, Registration, CONFIRM_TTL_SECS, FETCH_TTL_SECS,
};
use crate::ids::{KeyHash, LeaseId, ProviderId};
use crate::login::LoginRecord;
use crate::refresh::{first_version, ReadFrom, Status, LEASE_SECS};
use crate::seal::Sealed;
use crate::secret::StateToken;

struct GrantRow {
    provider: ProviderId,
    grant: Grant,
    version: i64,
    /// `active`, `reauth_required` or the tombstone `revoked`.
    status: &'static str,
    lease_until: i64,
    lease: Option<LeaseId>,
}

struct HandoffRow {
    binding_hash: Option<String>,
    sealed: Option<Sealed>,
    confirm_hash: Option<String>,
    confirm_expires_at: Option<i64>,
    confirmed: bool,
    collected: bool,
    expires_at: i64,
}

impl HandoffRow {
    fn registration(&self) -> Registration {
        Registration {
            binding_hash: self.binding_hash.clone(),
            sealed: self.sealed.is_some(),
            confirmed: self.confirmed,
            collected: self.collected,
            confirm_expires_at: self.confirm_expires_at,
        }
    }
}

struct CodeRow {
    record: CodeRecord,
    sealed: Sealed,
    redeemed: i64,
}

struct DeviceRow {
    user_code_hash: String,
    record: DeviceRecord,
    sealed: Option<Sealed>,
}

#[derive(Default)]
struct Tables {
    grants: HashMap<String, GrantRow>,
    logins: HashMap<String, LoginRecord>,
    handoffs: HashMap<String, HandoffRow>,
    codes: HashMap<String, CodeRow>,
    devices: HashMap<String, DeviceRow>,
}

impl Tables {
    /// `DELETE FROM <table> WHERE expires_at <= now`; how many.
    fn purge(&mut self, table: ShortLived, now: i64) -> usize {
        fn keep<V>(
            map: &mut HashMap<String, V>,
            expires_at: impl Fn(&V) -> i64,
            now: i64,
        ) -> usize {
            let before = map.len();
            map.retain(|_, v| expires_at(v) > now);
            before - map.len()
        }
        match table {
            ShortLived::Logins => keep(&mut self.logins, |r| r.expires_at, now),
            ShortLived::Handoffs => keep(&mut self.handoffs, |r| r.expires_at, now),
            ShortLived::Codes => keep(&mut self.codes, |r| r.record.expires_at, now),
            ShortLived::Devices => keep(&mut self.devices, |r| r.record.expires_at, now),
        }
    }
}

/// Every table in memory, shared by its clones.
#[derive(Clone, Default)]
pub struct MemoryStore {
    tables: Rc<RefCell<Tables>>,
    /// Test only: grant writes ignore the version (no compare-and-swap).
    broken_cas: bool,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store that breaks the contract: its grant writes (`write`,
    /// `replace`, `reauthorize`) ignore the version they were given.
    pub fn broken_cas() -> MemoryStore {
        MemoryStore {
            broken_cas: true,
            ..MemoryStore::default()
        }
    }
}

fn duplicate(table: &str) -> BrokerError {
    BrokerError::storage(format!("memory insert: UNIQUE constraint failed: {table}"))
}

/// One authid's grant in a [`MemoryStore`].
#[derive(Clone)]
pub struct MemoryGrant {
    store: MemoryStore,
    key: KeyHash,
}

impl GrantVault for MemoryStore {
    type Grant = MemoryGrant;
    fn grant(&self, authid: AuthId) -> Result<MemoryGrant, BrokerError> {
        Ok(MemoryGrant {
            store: self.clone(),
            key: KeyHash::new(sha256_hex(&authid.expose())),
        })
    }
}

impl MemoryGrant {
    /// Runs `f` on the row if it is still at `read`'s version (any version,
    /// for the broken store); whether it ran.
    fn swap(&self, read: &Opened, f: impl FnOnce(&mut GrantRow)) -> bool {
        let mut t = self.store.tables.borrow_mut();
        match t.grants.get_mut(self.key.as_str()) {
            Some(row) if self.store.broken_cas || row.version == read.version => {
                f(row);
                true
            }
            _ => false,
        }
    }

    fn reseal(&self, read: &Opened, provider: &ProviderId, grant: &Grant) -> bool {
        self.swap(read, |row| {
            row.provider = provider.clone();
            row.grant = grant.clone();
            row.version += 1;
            row.status = "active";
            row.lease_until = 0;
            row.lease = None;
        })
    }
}

impl Grants for MemoryGrant {
    async fn open(&self, _from: ReadFrom) -> Result<Opened, BrokerError> {
        let t = self.store.tables.borrow();
        let row = t
            .grants
            .get(self.key.as_str())
            .filter(|r| r.status != "revoked")
            .ok_or(BrokerError::UnknownAuthId)?;
        Ok(Opened {
            provider: row.provider.clone(),
            status: Status::parse(row.status),
            lease_until: row.lease_until,
            grant: row.grant.clone(),
            key_hash: self.key.clone(),
            version: row.version,
        })
    }

    async fn claim(&self, read: &Opened, now: i64) -> Result<Option<LeaseId>, BrokerError> {
        let lease = LeaseId::generate()?;
        let mut t = self.store.tables.borrow_mut();
        match t.grants.get_mut(self.key.as_str()) {
            Some(row)
                if row.version == read.version
                    && row.lease_until <= now
                    && row.status == "active" =>
            {
                row.lease_until = now + LEASE_SECS;
                row.lease = Some(lease.clone());
                Ok(Some(lease))
            }
            _ => Ok(None),
        }
    }

    async fn write(
        &self,
        read: &Opened,
        _lease: &LeaseId,
        grant: &Grant,
        _now: i64,
    ) -> Result<bool, BrokerError> {
        Ok(self.reseal(read, &read.provider, grant))
    }

    async fn release(
        &self,
        _read: &Opened,
        lease: &LeaseId,
        status: Status,
        _outcome: &'static str,
        _now: i64,
    ) -> Result<(), BrokerError> {
        let mut t = self.store.tables.borrow_mut();
        if let Some(row) = t.grants.get_mut(self.key.as_str()) {
            if row.lease.as_ref() == Some(lease) {
                row.lease_until = 0;
                row.lease = None;
                row.status = status.as_str();
            }
        }
        Ok(())
    }
}

impl GrantStore for MemoryGrant {
    async fn insert_if_absent(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        _now: i64,
    ) -> Result<bool, BrokerError> {
        let version = first_version()?;
        let mut t = self.store.tables.borrow_mut();
        if t.grants
            .get(self.key.as_str())
            .is_some_and(|r| r.status != "revoked")
        {
            return Ok(false);
        }
        t.grants.insert(
            self.key.as_str().to_string(),
            GrantRow {
                provider: provider.clone(),
                grant: grant.clone(),
                version,
                status: "active",
                lease_until: 0,
                lease: None,
            },
        );
        Ok(true)
    }

    async fn replace(
        &self,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        _now: i64,
    ) -> Result<bool, BrokerError> {
        Ok(self.reseal(read, provider, grant))
    }

    async fn reauthorize(
        &self,
        read: &Opened,
        grant: &Grant,
        _now: i64,
    ) -> Result<bool, BrokerError> {
        Ok(self.reseal(read, &read.provider, grant))
    }

    async fn revoke(&self, _read: &Opened, tombstone: bool) -> Result<(), BrokerError> {
        let mut t = self.store.tables.borrow_mut();
        if tombstone {
            if let Some(row) = t.grants.get_mut(self.key.as_str()) {
                row.status = "revoked";
                row.grant = Grant {
                    token: serde_json::Map::new(),
                    expires_at: 0,
                    account: None,
                };
                row.lease_until = 0;
                row.lease = None;
                row.version += 1;
            }
        } else {
            t.grants.remove(self.key.as_str());
        }
        Ok(())
    }

    async fn exists(&self) -> Result<bool, BrokerError> {
        let t = self.store.tables.borrow();
        Ok(t.grants
            .get(self.key.as_str())
            .is_some_and(|r| r.status != "revoked"))
    }

    async fn known(&self) -> Result<bool, BrokerError> {
        Ok(self
            .store
            .tables
            .borrow()
            .grants
            .contains_key(self.key.as_str()))
    }
}

impl Logins for MemoryStore {
    async fn insert_login(
        &self,
        state: &StateToken,
        r: &LoginRecord,
        now: i64,
    ) -> Result<(), BrokerError> {
        let mut t = self.tables.borrow_mut();
        t.purge(ShortLived::Logins, now);
        let key = sha256_hex(state.secret());
        if t.logins.contains_key(&key) {
            return Err(duplicate("login_states"));
        }
        t.logins.insert(key, r.clone());
        Ok(())
    }

    async fn find_login(
        &self,
        state: &StateToken,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        let t = self.tables.borrow();
        Ok(t.logins
            .get(&sha256_hex(state.secret()))
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn take_login(
        &self,
        state: &StateToken,
        binding_hash: &str,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError> {
        let mut t = self.tables.borrow_mut();
        let key = sha256_hex(state.secret());
        let matches = t
            .logins
            .get(&key)
            .is_some_and(|r| r.binding_hash == binding_hash && r.expires_at > now);
        Ok(if matches { t.logins.remove(&key) } else { None })
    }
}

impl Handoffs for MemoryStore {
    async fn register_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        let mut t = self.tables.borrow_mut();
        t.purge(ShortLived::Handoffs, now);
        t.handoffs
            .entry(token_hash.to_string())
            .or_insert(HandoffRow {
                binding_hash: Some(binding.hash()),
                sealed: None,
                confirm_hash: None,
                confirm_expires_at: None,
                confirmed: false,
                collected: false,
                expires_at,
            });
        Ok(())
    }

    async fn seal_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        sealed: &Sealed,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let mut t = self.tables.borrow_mut();
        let binding = binding.hash();
        match t.handoffs.get_mut(token_hash) {
            Some(r)
                if r.binding_hash.as_deref() == Some(binding.as_str())
                    && !r.confirmed
                    && !r.collected
                    && r.expires_at > now =>
            {
                r.sealed = Some(sealed.clone());
                r.confirm_hash = Some(confirm.hash());
                r.confirm_expires_at = Some(now + CONFIRM_TTL_SECS);
                r.expires_at = now + FETCH_TTL_SECS;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn handoff(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(Registration, Option<Sealed>)>, BrokerError> {
        let t = self.tables.borrow();
        Ok(t.handoffs
            .get(token_hash)
            .filter(|r| r.expires_at > now)
            .map(|r| (r.registration(), r.sealed.clone())))
    }

    async fn handoff_to_confirm(
        &self,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<Option<Registration>, BrokerError> {
        let t = self.tables.borrow();
        let hash = confirm.hash();
        Ok(t.handoffs
            .values()
            .find(|r| r.confirm_hash.as_deref() == Some(hash.as_str()) && r.expires_at > now)
            .map(HandoffRow::registration))
    }

    async fn confirm_handoff(
        &self,
        confirm: &ConfirmToken,
        binding: &HandoffBinding,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let mut t = self.tables.borrow_mut();
        let (hash, binding) = (confirm.hash(), binding.hash());
        let row = t.handoffs.values_mut().find(|r| {
            r.confirm_hash.as_deref() == Some(hash.as_str())
                && r.binding_hash.as_deref() == Some(binding.as_str())
                && r.confirm_expires_at.is_some_and(|at| at > now)
                && r.expires_at > now
                && r.sealed.is_some()
                && !r.confirmed
                && !r.collected
        });
        Ok(match row {
            Some(r) => {
                r.confirmed = true;
                r.confirm_hash = None;
                r.confirm_expires_at = None;
                true
            }
            None => false,
        })
    }

    async fn collect_handoff(&self, token_hash: &str, now: i64) -> Result<bool, BrokerError> {
        let mut t = self.tables.borrow_mut();
        match t.handoffs.get_mut(token_hash) {
            Some(r) if r.sealed.is_some() && r.confirmed && !r.collected && r.expires_at > now => {
                r.sealed = None;
                r.collected = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl Codes for MemoryStore {
    async fn insert_code(
        &self,
        code_hash: &str,
        r: &CodeRecord,
        sealed: &Sealed,
        now: i64,
    ) -> Result<(), BrokerError> {
        let mut t = self.tables.borrow_mut();
        t.purge(ShortLived::Codes, now);
        if t.codes.contains_key(code_hash) {
            return Err(duplicate("authorization_codes"));
        }
        t.codes.insert(
            code_hash.to_string(),
            CodeRow {
                record: r.clone(),
                sealed: sealed.clone(),
                redeemed: 0,
            },
        );
        Ok(())
    }

    async fn code(&self, code_hash: &str) -> Result<Option<(CodeRecord, Sealed)>, BrokerError> {
        let t = self.tables.borrow();
        Ok(t.codes
            .get(code_hash)
            .map(|r| (r.record.clone(), r.sealed.clone())))
    }

    async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Option<i64>, BrokerError> {
        let mut t = self.tables.borrow_mut();
        Ok(match t.codes.get_mut(code_hash) {
            Some(r) if r.record.expires_at > now => {
                r.redeemed += 1;
                Some(r.redeemed)
            }
            _ => None,
        })
    }
}

impl Devices for MemoryStore {
    async fn insert_device(
        &self,
        device_code_hash: &str,
        user_code_hash: &str,
        r: &DeviceRecord,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let mut t = self.tables.borrow_mut();
        t.purge(ShortLived::Devices, now);
        let taken = t.devices.contains_key(device_code_hash)
            || t.devices
                .values()
                .any(|d| d.user_code_hash == user_code_hash);
        if !taken {
            t.devices.insert(
                device_code_hash.to_string(),
                DeviceRow {
                    user_code_hash: user_code_hash.to_string(),
                    record: r.clone(),
                    sealed: None,
                },
            );
        }
        Ok(t.devices.contains_key(device_code_hash))
    }

    async fn device(&self, device_code_hash: &str) -> Result<Option<DeviceRecord>, BrokerError> {
        let t = self.tables.borrow();
        Ok(t.devices.get(device_code_hash).map(|d| d.record.clone()))
    }

    async fn pending_device_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<(String, DeviceRecord)>, BrokerError> {
        let t = self.tables.borrow();
        Ok(t.devices
            .iter()
            .find(|(_, d)| {
                d.user_code_hash == user_code_hash
                    && d.record.status == DeviceStatus::Pending
                    && d.record.expires_at > now
            })
            .map(|(k, d)| (k.clone(), d.record.clone())))
    }

    async fn record_poll(
        &self,
        device_code_hash: &str,
        interval: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        let mut t = self.tables.borrow_mut();
        if let Some(d) = t.devices.get_mut(device_code_hash) {
            if d.record.status == DeviceStatus::Pending {
                d.record.last_poll_at = Some(now);
                d.record.interval = interval;
            }
        }
        Ok(())
    }

    async fn approve_device(
        &self,
        device_code_hash: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let mut t = self.tables.borrow_mut();
        match t.devices.get_mut(device_code_hash) {
            Some(d) if d.record.status == DeviceStatus::Pending && d.record.expires_at > now => {
                d.record.status = DeviceStatus::Approved;
                d.sealed = Some(sealed.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn deny_device(&self, device_code_hash: &str) -> Result<(), BrokerError> {
        let mut t = self.tables.borrow_mut();
        if let Some(d) = t.devices.get_mut(device_code_hash) {
            if d.record.status == DeviceStatus::Pending {
                d.record.status = DeviceStatus::Denied;
            }
        }
        Ok(())
    }

    async fn take_approved_device(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<Option<Sealed>, BrokerError> {
        let mut t = self.tables.borrow_mut();
        match t.devices.get_mut(device_code_hash) {
            Some(d) if d.record.status == DeviceStatus::Approved && d.record.expires_at > now => {
                d.record.status = DeviceStatus::Collected;
                Ok(d.sealed.take())
            }
            _ => Ok(None),
        }
    }
}

impl Expiry for MemoryStore {
    async fn purge_expired(&self, table: ShortLived, now: i64) -> Result<usize, BrokerError> {
        Ok(self.tables.borrow_mut().purge(table, now))
    }
}
