//! `device_codes`: RFC 8628 device authorizations (`crate::device`), keyed by
//! `device::device_code_hash`, found by the verification page through
//! `device::user_code_hash`. The first answer (authid and first access token, `crate::redeem::Issuance`) is stored only sealed
//! (`seal::Pending::DeviceCode`) and wiped when the device collects it (the
//! row stays, `collected`, until it expires). Every write repeats the condition it depends on (pending,
//! unexpired, approved) so that it is atomic.

use serde::Deserialize;
use wasm_bindgen::JsValue;

use super::{num, Db};
use crate::device::{DeviceRecord, Status};
use crate::error::BrokerError;
use crate::ids::ClaimId;
use crate::seal::Sealed;
use crate::storage::Devices;

#[derive(Deserialize)]
struct DeviceRow {
    provider: String,
    status: String,
    poll_interval: i64,
    last_poll_at: Option<i64>,
    expires_at: i64,
    requested_from: Option<String>,
}

const COLUMNS: &str = "provider, status, poll_interval, last_poll_at, expires_at, requested_from";

impl DeviceRow {
    fn record(self) -> Option<DeviceRecord> {
        Some(DeviceRecord {
            provider: self.provider,
            status: Status::parse(&self.status)?,
            interval: self.poll_interval,
            last_poll_at: self.last_poll_at,
            expires_at: self.expires_at,
            requested_from: self.requested_from,
        })
    }
}

#[derive(Deserialize)]
struct SealedRow {
    key_version: Option<u32>,
    nonce: Option<String>,
    ciphertext: Option<String>,
}

impl Devices for Db {
    /// Stores a new device authorization (pending) and drops expired ones.
    /// False when the user code is already taken by a live row (the caller
    /// draws another).
    async fn insert_device(
        &self,
        device_code_hash: &str,
        user_code_hash: &str,
        r: &DeviceRecord,
        now: i64,
    ) -> Result<bool, BrokerError> {
        self.insert_after_gc(
            "insert_device",
            "device_codes",
            now,
            "INSERT INTO device_codes (device_code_hash, user_code_hash, provider, status, \
             poll_interval, expires_at, requested_from) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT DO NOTHING",
            &[
                device_code_hash.into(),
                user_code_hash.into(),
                r.provider.as_str().into(),
                r.status.as_str().into(),
                num(r.interval),
                num(r.expires_at),
                r.requested_from
                    .as_deref()
                    .map_or(JsValue::NULL, JsValue::from),
            ],
        )
        .await?;
        Ok(self.device(device_code_hash).await?.is_some())
    }

    /// The device row under `device_code_hash`, expired or not.
    async fn device(&self, device_code_hash: &str) -> Result<Option<DeviceRecord>, BrokerError> {
        let row: Option<DeviceRow> = self
            .first(
                "device",
                &format!("SELECT {COLUMNS} FROM device_codes WHERE device_code_hash = ?1"),
                &[device_code_hash.into()],
            )
            .await?;
        Ok(row.and_then(DeviceRow::record))
    }

    /// The pending, unexpired device row the user code names: its device code
    /// hash and record.
    async fn pending_device_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<(String, DeviceRecord)>, BrokerError> {
        #[derive(Deserialize)]
        struct Row {
            device_code_hash: String,
            #[serde(flatten)]
            row: DeviceRow,
        }
        let row: Option<Row> = self
            .first(
                "pending_device_by_user_code",
                &format!(
                    "SELECT device_code_hash, {COLUMNS} FROM device_codes WHERE user_code_hash = ?1 \
                     AND status = 'pending' AND expires_at > ?2"
                ),
                &[user_code_hash.into(), num(now)],
            )
            .await?;
        Ok(row.and_then(|r| Some((r.device_code_hash, r.row.record()?))))
    }

    /// Records a poll of a pending row (and its possibly grown interval).
    async fn record_poll(
        &self,
        device_code_hash: &str,
        interval: i64,
        now: i64,
    ) -> Result<(), BrokerError> {
        self.changes(
            "record_poll",
            "UPDATE device_codes SET last_poll_at = ?2, poll_interval = ?3 \
             WHERE device_code_hash = ?1 AND status = 'pending'",
            &[device_code_hash.into(), num(now), num(interval)],
        )
        .await?;
        Ok(())
    }

    /// Approves a pending, unexpired row with the sealed authid; true if it was.
    async fn approve_device(
        &self,
        device_code_hash: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<bool, BrokerError> {
        let n = self
            .changes(
                "approve_device",
                "UPDATE device_codes SET status = 'approved', key_version = ?2, nonce = ?3, \
                 ciphertext = ?4 WHERE device_code_hash = ?1 AND status = 'pending' \
                 AND expires_at > ?5",
                &[
                    device_code_hash.into(),
                    num(sealed.key_version.into()),
                    sealed.nonce.as_str().into(),
                    sealed.ciphertext.as_str().into(),
                    num(now),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Marks a pending row denied (the user or the provider refused).
    async fn deny_device(&self, device_code_hash: &str) -> Result<(), BrokerError> {
        self.changes(
            "deny_device",
            "UPDATE device_codes SET status = 'denied' WHERE device_code_hash = ?1 \
             AND status = 'pending'",
            &[device_code_hash.into()],
        )
        .await?;
        Ok(())
    }

    /// Collects an approved, unexpired device login: its sealed first answer
    /// is read, then the row is marked `collected` with this poll's claim id
    /// and the payload wiped, in one conditional write that exactly one poll
    /// wins. The sealed answer for that poll, `None` for every other (or if
    /// none is approved). A collection D1 committed but whose answer it lost
    /// is still this poll's (`collected_by`), so the authid is not lost.
    async fn take_approved_device(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<Option<Sealed>, BrokerError> {
        let row: Option<SealedRow> = self
            .first(
                "approved_device",
                "SELECT key_version, nonce, ciphertext FROM device_codes \
                 WHERE device_code_hash = ?1 AND status = 'approved' AND expires_at > ?2",
                &[device_code_hash.into(), num(now)],
            )
            .await?;
        let Some(sealed) = row.and_then(|r| {
            Some(Sealed {
                key_version: r.key_version?,
                nonce: r.nonce?,
                ciphertext: r.ciphertext?,
            })
        }) else {
            return Ok(None);
        };
        let claim = ClaimId::generate()?;
        let taken = self
            .changes(
                "take_approved_device",
                "UPDATE device_codes SET status = 'collected', collected_by = ?3, \
                 key_version = NULL, nonce = NULL, ciphertext = NULL \
                 WHERE device_code_hash = ?1 AND status = 'approved' AND expires_at > ?2",
                &[device_code_hash.into(), num(now), claim.as_str().into()],
            )
            .await;
        let ours = match taken {
            Ok(n) => n == 1,
            Err(e) => {
                self.claim_stands(
                    e,
                    "device_claim",
                    "SELECT collected_by AS claim FROM device_codes WHERE device_code_hash = ?1",
                    device_code_hash,
                    &claim,
                )
                .await?;
                true
            }
        };
        Ok(ours.then_some(sealed))
    }
}
