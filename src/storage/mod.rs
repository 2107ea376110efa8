//! The storage contract: what the broker asks of the store that keeps its
//! grants and its four short-lived tables, as traits a backend implements.
//! The D1 store (`src/shell/store/`) implements them; [`memory`] does so in
//! memory for native tests; [`conformance`] checks any implementation against
//! the guarantees below, natively and (in the fault-injection build) against
//! D1 itself. Why these guarantees, how D1 gives each and which Cloudflare
//! stores could: `docs/storage.md`, "What a storage backend must guarantee".
//!
//! Every backend must give three things:
//!
//! 1. **Compare-and-swap on a version.** Every write of a grant names the
//!    version it read ([`Opened::version`]); it changes the row only if the
//!    row is still at that version, bumps the version when it does, and says
//!    whether it did (`false`: nothing changed). Two claims of one version:
//!    exactly one wins. A refresh token rotated by the provider is persisted
//!    by such a write, so a lost update is a lost grant.
//! 2. **Delete-returning (one-time claims).** A take (a login state's
//!    delete, a code's spend, a device login's or hand-off's collection)
//!    returns the row, or says it won, to exactly one caller, however many
//!    ask at once; every later take gets nothing.
//! 3. **Expiry.** A short-lived row is expired from its `expires_at` (unix
//!    seconds) on: no read or take that the doc of its method marks as such
//!    returns it, whether or not it was purged yet, and [`Expiry::purge_expired`]
//!    deletes expired rows and only those.
//!
//! Futures are not `Send`: Workers run one request per isolate thread (as
//! [`crate::refresh::Grants`]).

#[cfg(any(test, feature = "fault-injection"))]
pub mod conformance;
#[cfg(not(target_arch = "wasm32"))]
pub mod memory;

use crate::authid::AuthId;
use crate::authorize::CodeRecord;
use crate::device::DeviceRecord;
use crate::error::BrokerError;
use crate::grant::Grant;
use crate::handoff::{ConfirmToken, HandoffBinding, Registration};
use crate::ids::ProviderId;
use crate::login::LoginRecord;
pub use crate::refresh::{Grants, Opened};
use crate::seal::Sealed;
use crate::secret::StateToken;

/// Every check of [`conformance`], in the order it runs them: a backend that
/// passes all of them gives the guarantees above. (Here, not in
/// `conformance`, so that the end-to-end suite can count them.)
pub const CHECKS: &[&str] = &[
    "grant: insert then open returns it",
    "grant: insert_if_absent does not overwrite a live row",
    "grant: CAS write with the version read succeeds and bumps it",
    "grant: CAS write with a stale version changes nothing",
    "grant: CAS replace with a stale version changes nothing",
    "grant: two concurrent claims, exactly one wins",
    "grant: a claimed lease blocks another claim until it is released",
    "grant: release frees the lease and sets the status",
    "grant: revoke deletes the row once, then nothing",
    "grant: a tombstone is known, not live, and overwritten by insert_if_absent",
    "login: take returns the row once, then nothing",
    "login: two concurrent takes, exactly one gets the row",
    "login: take needs the browser's binding",
    "login: an expired row is never returned",
    "handoff: collect succeeds once, then never",
    "handoff: an expired row is never returned nor collected",
    "code: two concurrent spends, exactly one is the first",
    "code: an expired code is never spent",
    "device: two concurrent collections, exactly one gets the answer",
    "device: an expired approval is never collected",
    "purge: removes expired rows only",
];

/// One authid's grant row: the refresh protocol's statements
/// ([`Grants`]: open, claim the lease, compare-and-swap write, release) plus
/// the rest of its life. Every write that changes the sealed grant bumps the
/// version; every conditional write says whether it changed the row.
#[allow(async_fn_in_trait)]
pub trait GrantStore: Grants {
    /// Stores a new grant unless a live one is stored under this authid; a
    /// tombstone (revoked or replaced) is overwritten. A new row starts at a
    /// random version ([`crate::refresh::first_version`]), never at one a
    /// deleted row had. Whether this call stored it.
    async fn insert_if_absent(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError>;

    /// Stores a new grant under a freshly minted authid; a row already there
    /// (a keyid collision, 2^-128) is refused, never overwritten.
    async fn insert(
        &self,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<(), BrokerError> {
        if self.insert_if_absent(provider, grant, now).await? {
            Ok(())
        } else {
            Err(BrokerError::internal("a new authid's key hash is taken"))
        }
    }

    /// Replaces the grant read as `read` with `grant` for `provider`:
    /// compare-and-swap on `read.version`, bumping it, lease freed, status
    /// active. False (nothing changed) if the row moved on since `read`.
    async fn replace(
        &self,
        read: &Opened,
        provider: &ProviderId,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError>;

    /// As [`GrantStore::replace`] with the same provider, for a new login of
    /// the same account (`crate::reauthorize`).
    async fn reauthorize(
        &self,
        read: &Opened,
        grant: &Grant,
        now: i64,
    ) -> Result<bool, BrokerError>;

    /// Deletes the row (or, with `tombstone`, keeps its key as a `revoked`
    /// tombstone without the grant, version bumped): afterwards
    /// [`Grants::open`] answers [`BrokerError::UnknownAuthId`].
    async fn revoke(&self, read: &Opened, tombstone: bool) -> Result<(), BrokerError>;

    /// Whether a live grant (no tombstone) is stored under this authid.
    async fn exists(&self) -> Result<bool, BrokerError>;

    /// Whether this authid has any row, a tombstone included.
    async fn known(&self) -> Result<bool, BrokerError>;
}

/// Where grants live: one [`GrantStore`] per authid.
pub trait GrantVault {
    type Grant: GrantStore;
    /// The grant stored (or to be stored) under `authid`.
    fn grant(&self, authid: AuthId) -> Result<Self::Grant, BrokerError>;
}

/// `login_states`: logins in progress, single use, keyed by their state.
#[allow(async_fn_in_trait)]
pub trait Logins {
    /// Stores a started login (and may drop expired ones).
    async fn insert_login(
        &self,
        state: &StateToken,
        r: &LoginRecord,
        now: i64,
    ) -> Result<(), BrokerError>;
    /// The login under `state` without consuming it; never an expired one.
    async fn find_login(
        &self,
        state: &StateToken,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError>;
    /// Deletes and returns the login under `state` if it is bound to
    /// `binding_hash` and unexpired: to exactly one caller.
    async fn take_login(
        &self,
        state: &StateToken,
        binding_hash: &str,
        now: i64,
    ) -> Result<Option<LoginRecord>, BrokerError>;
}

/// `fetch_tokens`: Duplicati's old-UI hand-off. Every method but the
/// registration treats an expired row as absent; every write repeats the
/// conditions it depends on, so that it is atomic.
#[allow(async_fn_in_trait)]
pub trait Handoffs {
    /// Registers `token_hash` for the browser `binding`; a no-op when it is
    /// registered already (by whichever browser).
    async fn register_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        expires_at: i64,
        now: i64,
    ) -> Result<(), BrokerError>;
    /// Leaves a sealed, unconfirmed authid on the row `binding` registered,
    /// unless confirmed or collected already. True if left.
    async fn seal_handoff(
        &self,
        token_hash: &str,
        binding: &HandoffBinding,
        sealed: &Sealed,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<bool, BrokerError>;
    /// The unexpired hand-off under `token_hash`, and its sealed authid.
    async fn handoff(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(Registration, Option<Sealed>)>, BrokerError>;
    /// The unexpired hand-off waiting for `confirm`.
    async fn handoff_to_confirm(
        &self,
        confirm: &ConfirmToken,
        now: i64,
    ) -> Result<Option<Registration>, BrokerError>;
    /// Confirms it for `binding`, once (the confirmation is erased).
    async fn confirm_handoff(
        &self,
        confirm: &ConfirmToken,
        binding: &HandoffBinding,
        now: i64,
    ) -> Result<bool, BrokerError>;
    /// Collects a confirmed, unexpired hand-off and erases its sealed authid:
    /// true for exactly one caller.
    async fn collect_handoff(&self, token_hash: &str, now: i64) -> Result<bool, BrokerError>;
}

/// `authorization_codes`: one-time codes of the OAuth 2.0 authorization
/// endpoint.
#[allow(async_fn_in_trait)]
pub trait Codes {
    /// Stores an issued code (and may drop expired ones).
    async fn insert_code(
        &self,
        code_hash: &str,
        r: &CodeRecord,
        sealed: &Sealed,
        now: i64,
    ) -> Result<(), BrokerError>;
    /// The code's row as issued, *expired ones included* (the core refuses
    /// them as expired: `crate::authorize::check_redemption`); spends nothing.
    async fn code(&self, code_hash: &str) -> Result<Option<(CodeRecord, Sealed)>, BrokerError>;
    /// Counts a presentation of an unexpired code and returns the count,
    /// this one included: of any number at once, exactly one sees 1. `None`
    /// once it expired.
    async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Option<i64>, BrokerError>;
}

/// `device_codes`: RFC 8628 device authorizations.
#[allow(async_fn_in_trait)]
pub trait Devices {
    /// Stores a pending device authorization; false when the user code is
    /// taken by a live row.
    async fn insert_device(
        &self,
        device_code_hash: &str,
        user_code_hash: &str,
        r: &DeviceRecord,
        now: i64,
    ) -> Result<bool, BrokerError>;
    /// The row, *expired or not* (the core answers `expired_token`).
    async fn device(&self, device_code_hash: &str) -> Result<Option<DeviceRecord>, BrokerError>;
    /// The pending, unexpired row the user code names.
    async fn pending_device_by_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<(String, DeviceRecord)>, BrokerError>;
    /// Records a poll of a pending row.
    async fn record_poll(
        &self,
        device_code_hash: &str,
        interval: i64,
        now: i64,
    ) -> Result<(), BrokerError>;
    /// Approves a pending, unexpired row with the sealed answer.
    async fn approve_device(
        &self,
        device_code_hash: &str,
        sealed: &Sealed,
        now: i64,
    ) -> Result<bool, BrokerError>;
    /// Marks a pending row denied.
    async fn deny_device(&self, device_code_hash: &str) -> Result<(), BrokerError>;
    /// Collects an approved, unexpired row (its sealed answer wiped): the
    /// answer for exactly one caller, `None` for every other.
    async fn take_approved_device(
        &self,
        device_code_hash: &str,
        now: i64,
    ) -> Result<Option<Sealed>, BrokerError>;
}

/// The short-lived tables: every row has an `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortLived {
    Logins,
    Handoffs,
    Codes,
    Devices,
}

impl ShortLived {
    pub const ALL: [ShortLived; 4] = [
        ShortLived::Logins,
        ShortLived::Handoffs,
        ShortLived::Codes,
        ShortLived::Devices,
    ];

    /// Its table in `schema.sql`.
    pub fn table(self) -> &'static str {
        match self {
            ShortLived::Logins => "login_states",
            ShortLived::Handoffs => "fetch_tokens",
            ShortLived::Codes => "authorization_codes",
            ShortLived::Devices => "device_codes",
        }
    }
}

/// Expiry's other half: expired rows are deleted.
#[allow(async_fn_in_trait)]
pub trait Expiry {
    /// Deletes the rows of `table` expired by `now` (`expires_at <= now`),
    /// and no other; how many.
    async fn purge_expired(&self, table: ShortLived, now: i64) -> Result<usize, BrokerError>;
}
