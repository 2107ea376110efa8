//! Sealing: how a refresh token is stored so that a database dump is useless
//! without the authid, and an authid is useless without the server secret; and
//! how a pending hand-off authid (Duplicati's old UI, [`crate::handoff`]) is
//! stored so that a dump is useless without the UI's token and the server
//! secret.
//!
//! Per server-secret version `v` (secret `S_v`, from a Worker secret binding):
//! - `lookup_key_v = HKDF-SHA256(salt = none, ikm = S_v, info = "oauth-broker/v1/lookup")`,
//!   `seal_salt_v = HKDF-SHA256(salt = none, ikm = S_v, info = "oauth-broker/v1/seal-salt")`
//!   and `handoff_salt_v = HKDF-SHA256(salt = none, ikm = S_v, info = "oauth-broker/v1/handoff-salt")`
//!   (RFC 5869 §3.3/§3.4: one operator secret, three independent 32-byte
//!   subkeys told apart by `info`, so no key ever serves two purposes).
//! - Row key: `key_hash_v = hex(HMAC-SHA256(lookup_key_v, "oauth-broker/v1/keyid" || keyid))`.
//!   Only the keyid is hashed; the authid's secret half never leaves memory
//!   except as KDF input. Without `S_v` the hash cannot be linked to an authid.
//! - Grant key: `HKDF-SHA256(salt = seal_salt_v, ikm = authid secret,
//!   info = "oauth-broker/v1/grant-key" || key_hash_v)`.
//! - AEAD: AES-256-GCM, AAD = `"oauth-broker/v1/grant|" || key_hash_v || "|" ||
//!   provider || "|" || decimal(v)`, binding the ciphertext to its row.
//! - Nonce: 96 fresh random bits on every seal (NIST SP 800-38D §8.2.2).
//!
//! Pending hand-off (token `t`, chosen by the old UI, at most 15 minutes old):
//! - Hand-off key: `HKDF-SHA256(salt = handoff_salt_v, ikm = t,
//!   info = "oauth-broker/v1/handoff-key")`.
//! - AEAD: AES-256-GCM, AAD = `"oauth-broker/v1/handoff|" || token_hash(t) ||
//!   "|" || decimal(v)` ([`crate::handoff::token_hash`], the row key).
//! - Nonce: 96 fresh random bits on every seal.
//!
//! Every label starts with `oauth-broker/v1/` so no value computed here can
//! collide with one computed for another purpose, here or in another module.
//! All AES-256-GCM in the crate goes through one private pair, `aead_seal` /
//! `aead_open`, so there is one place to audit nonces, encoding and failures.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::authid::AuthId;
use crate::handoff::token_hash;
use crate::ids::KeyHash;
use crate::random;
use crate::secret::ct_eq;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MIN_SECRET_LEN: usize = 32;
const NONCE_LEN: usize = 12;

const INFO_LOOKUP: &[u8] = b"oauth-broker/v1/lookup";
const INFO_SEAL_SALT: &[u8] = b"oauth-broker/v1/seal-salt";
const LABEL_KEYID: &[u8] = b"oauth-broker/v1/keyid";
const LABEL_ACCOUNT: &[u8] = b"oauth-broker/v1/account";
const INFO_GRANT_KEY: &[u8] = b"oauth-broker/v1/grant-key";
const LABEL_AAD: &str = "oauth-broker/v1/grant";
const INFO_HANDOFF_SALT: &[u8] = b"oauth-broker/v1/handoff-salt";
const INFO_HANDOFF_KEY: &[u8] = b"oauth-broker/v1/handoff-key";
const LABEL_HANDOFF_AAD: &str = "oauth-broker/v1/handoff";

/// What a short-lived one-time secret seals ([`ServerKeys::seal_pending`]):
/// each purpose has its own key label and AAD label, so a value sealed for one
/// purpose never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The authid behind an authorization code (RFC 6749 §4.1.2), under a key
    /// from the code itself (the broker stores only the code's hash).
    AuthorizationCode,
    /// The authid behind an approved device code (RFC 8628), under a key from
    /// the device code's hash (the approving browser never sees the code).
    DeviceCode,
    /// An OAuth 2.0 client's `state` during a login, under a key from the
    /// login's browser-binding cookie (stored only hashed).
    ClientState,
    /// The `/k/<key>` prefix an OAuth 2.0 authorization request came through
    /// (it holds an access key), under the same cookie as [`Pending::ClientState`]:
    /// the callback names the issuer the client discovered with it.
    GateBase,
    /// The authid a status page acts on (re-authorize, revoke), under a key
    /// from a cookie set with that page (`crate::reauthorize::Ticket`): the
    /// page carries only this, never the authid.
    StatusTicket,
    /// The authid a re-authorization login writes into, under the login's
    /// browser-binding cookie (like [`Pending::ClientState`]).
    ReauthorizeAuthId,
}

impl Pending {
    fn label(self) -> &'static str {
        match self {
            Pending::AuthorizationCode => "oauth-broker/v1/authorization-code",
            Pending::DeviceCode => "oauth-broker/v1/device-code",
            Pending::ClientState => "oauth-broker/v1/client-state",
            Pending::GateBase => "oauth-broker/v1/gate-base",
            Pending::StatusTicket => "oauth-broker/v1/status-ticket",
            Pending::ReauthorizeAuthId => "oauth-broker/v1/reauthorize-authid",
        }
    }
}

/// RFC 5869 HKDF-SHA256 to 32 bytes; `info` is the concatenation of its parts.
/// (Expand only fails above 255 * 32 bytes of output, so 32 bytes never fails;
/// the error is still returned rather than ignored, so no zero key can escape.)
fn hkdf32(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[&[u8]],
) -> Result<[u8; 32], hkdf::InvalidLength> {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(salt, ikm).expand_multi_info(info, &mut out)?;
    Ok(out)
}

/// The per-version subkeys of one server secret.
struct Subkeys {
    lookup_key: [u8; 32],
    seal_salt: [u8; 32],
    handoff_salt: [u8; 32],
}

/// The subkeys of a server secret. No HKDF salt: `S_v` is operator-chosen
/// high-entropy key material, which RFC 5869 §3.1 allows to be used unsalted;
/// `info` alone separates the three subkeys. The hand-off gets its own salt
/// rather than reusing `seal_salt_v`, so a grant key and a hand-off key can
/// never coincide whatever a UI picks as its token.
fn subkeys(secret: &[u8]) -> Result<Subkeys, hkdf::InvalidLength> {
    Ok(Subkeys {
        lookup_key: hkdf32(None, secret, &[INFO_LOOKUP])?,
        seal_salt: hkdf32(None, secret, &[INFO_SEAL_SALT])?,
        handoff_salt: hkdf32(None, secret, &[INFO_HANDOFF_SALT])?,
    })
}

/// 96 fresh CSPRNG bits for one seal (NIST SP 800-38D §8.2.2, RBG-based IVs).
fn fresh_nonce() -> Result<[u8; NONCE_LEN], SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    random::fill(&mut nonce).map_err(|_| SealError::Random)?;
    Ok(nonce)
}

/// The one AES-256-GCM seal in the crate: `(nonce, ciphertext || tag)`, both
/// base64 (standard, padded). The nonce is a parameter only so that the
/// known-answer tests can fix it; every public caller passes [`fresh_nonce`].
fn aead_seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<(String, String), SealError> {
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Crypto)?;
    Ok((B64.encode(nonce), B64.encode(ct)))
}

/// The one AES-256-GCM open in the crate. Fails closed with
/// [`SealError::Open`] on bad base64, a nonce that is not 12 bytes, a wrong key
/// or AAD, or any tampering (the GCM tag check): callers cannot tell them apart.
fn aead_open(
    key: &[u8; 32],
    aad: &[u8],
    nonce_b64: &str,
    ct_b64: &str,
) -> Result<Vec<u8>, SealError> {
    let nonce = B64
        .decode(nonce_b64)
        .ok()
        .filter(|n| n.len() == NONCE_LEN)
        .ok_or(SealError::Open)?;
    let ct = B64.decode(ct_b64).map_err(|_| SealError::Open)?;
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad })
        .map_err(|_| SealError::Open)
}

/// One version of the server secret, kept only as its derived subkeys (the raw
/// secret is dropped once parsed). `Debug` shows the version only.
pub struct ServerSecret {
    version: u32,
    /// HMAC-SHA256 keyed with `lookup_key_v`, keyed once here so that computing
    /// a row key cannot fail later.
    lookup: Hmac<Sha256>,
    seal_salt: [u8; 32],
    handoff_salt: [u8; 32],
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerSecret(v{}, [redacted])", self.version)
    }
}

impl ServerSecret {
    fn new(version: u32, secret: &[u8]) -> Result<ServerSecret, KeyConfigError> {
        const FAILED: KeyConfigError = KeyConfigError("sealing key derivation failed");
        let keys = subkeys(secret).map_err(|_| FAILED)?;
        let lookup = <Hmac<Sha256> as Mac>::new_from_slice(&keys.lookup_key).map_err(|_| FAILED)?;
        Ok(ServerSecret {
            version,
            lookup,
            seal_salt: keys.seal_salt,
            handoff_salt: keys.handoff_salt,
        })
    }

    /// `key_hash_v`: a keyed hash (not a plain hash) so that a dumped table
    /// cannot be matched against keyids seen elsewhere (logs, a user's config)
    /// without `S_v`. Only the keyid goes in: the row key is computable before
    /// the secret half is trusted, and the secret half is never hashed into
    /// anything stored.
    fn key_hash(&self, key_id: &[u8; 16]) -> String {
        let mut mac = self.lookup.clone();
        mac.update(LABEL_KEYID);
        mac.update(key_id);
        random::hex(&mac.finalize().into_bytes())
    }

    /// The keyed hash of a provider account id (`crate::account`): under
    /// `lookup_key_v` with its own label, so it is never equal to a row key,
    /// and it names no account without `S_v`. Length-prefixed parts keep
    /// `(provider, id)` pairs apart.
    fn account_hash(&self, provider: &str, account_id: &str) -> String {
        let mut mac = self.lookup.clone();
        mac.update(LABEL_ACCOUNT);
        for part in [provider, account_id] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        random::hex(&mac.finalize().into_bytes())
    }

    /// The grant key. The authid's secret half is 256 CSPRNG bits (at least
    /// ~190 bits for any accepted 32+ char secret), so a fast KDF is right:
    /// there is nothing to brute-force and a slow KDF would only cost CPU on
    /// every refresh. Salting with `seal_salt_v` means a leaked authid alone
    /// cannot open a dumped row: the server secret is needed too. `key_hash_v`
    /// in `info` gives each row (and each version) its own key.
    fn grant_key(&self, authid: &AuthId, key_hash: &str) -> Result<[u8; 32], SealError> {
        hkdf32(
            Some(&self.seal_salt),
            authid.secret().secret().as_bytes(),
            &[INFO_GRANT_KEY, key_hash.as_bytes()],
        )
        .map_err(|_| SealError::Crypto)
    }

    /// The AAD binds a ciphertext to its row: opened under another key hash,
    /// provider or version, the tag check fails. It is unambiguous: the key hash
    /// is fixed-width hex and the version (after the last `|`) is digits only.
    fn grant_aad(&self, key_hash: &str, provider: &str) -> String {
        format!("{LABEL_AAD}|{key_hash}|{provider}|{}", self.version)
    }

    /// The hand-off key for the holder of `token`.
    ///
    /// Why the token: it is the one secret the polling UI and the completing
    /// login share, and the broker stores only its hash, so a dumped
    /// `fetch_tokens` row cannot be opened from the database alone.
    ///
    /// Why the server salt: the UI picks the token and the broker cannot vouch
    /// for its entropy; salting with `handoff_salt_v` means that even a guessable
    /// token cannot be tried against a dumped row offline without `S_v`. Taking
    /// the salt from the versioned tree (not from the raw binding) is what lets
    /// a hand-off sealed under `v` still open after the operator rotates to
    /// `v + 1`, as long as `v` is kept in the previous secrets.
    ///
    /// A fast KDF is enough: the row lives at most [`crate::handoff::FETCH_TTL_SECS`]
    /// and is handed out once, and with `S_v` unknown there is nothing to
    /// brute-force.
    fn handoff_key(&self, token: &str) -> Result<[u8; 32], SealError> {
        hkdf32(
            Some(&self.handoff_salt),
            token.as_bytes(),
            &[INFO_HANDOFF_KEY],
        )
        .map_err(|_| SealError::Crypto)
    }

    /// The AAD binds a hand-off to its row (`token_hash` is the row key) and to
    /// its version, so a relabelled `key_version` fails the tag check. It is
    /// unambiguous: the token hash is fixed-width hex, the version digits only.
    fn handoff_aad(&self, token: &str) -> String {
        format!("{LABEL_HANDOFF_AAD}|{}|{}", token_hash(token), self.version)
    }

    /// The key for a [`Pending`] value held by whoever knows `secret`. Same
    /// construction and reasoning as [`ServerSecret::handoff_key`] (the salt is
    /// the hand-off salt; the `info` label alone separates the purposes, and
    /// HKDF outputs under different `info` are independent): every secret used
    /// here is at least 256 CSPRNG bits, lives at most ten minutes, and is
    /// stored only hashed, so a dumped row cannot be opened without both the
    /// secret and `S_v`.
    fn pending_key(&self, purpose: Pending, secret: &str) -> Result<[u8; 32], SealError> {
        hkdf32(
            Some(&self.handoff_salt),
            secret.as_bytes(),
            &[purpose.label().as_bytes(), b"-key"],
        )
        .map_err(|_| SealError::Crypto)
    }

    /// Binds the ciphertext to its purpose, its secret (by hash; fixed-width
    /// hex) and its version.
    fn pending_aad(&self, purpose: Pending, secret: &str) -> String {
        format!(
            "{}|{}|{}",
            purpose.label(),
            crate::digest::sha256_hex(secret),
            self.version
        )
    }

    /// Whether `other` is this very entry again: same version and same secret.
    /// The raw secret is gone once parsed, so the comparison is on a subkey:
    /// two secrets whose HKDF outputs agree are the same secret for every
    /// purpose here (a collision of HKDF-SHA256 outputs is not a practical
    /// event), and `ct_eq` keeps the comparison from leaking where they differ.
    fn is(&self, other: &ServerSecret) -> bool {
        self.version == other.version && ct_eq(&self.seal_salt, &other.seal_salt)
    }
}

/// The server secrets: the current version seals, previous versions still open,
/// so operators can rotate without stranding stored grants.
///
/// No two entries are the same (version, secret) pair ([`ServerKeys::parse`]
/// drops repeats), but two entries may carry the same version with different
/// secrets; every lookup and open below therefore considers every secret of a
/// row's version, never just the first.
#[derive(Debug)]
pub struct ServerKeys {
    current: ServerSecret,
    previous: Vec<ServerSecret>,
}

/// Why the server-secret configuration was refused. Only fixed messages, so it
/// never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfigError(pub &'static str);

impl std::fmt::Display for KeyConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A sealed grant or pending hand-off as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    pub key_version: u32,
    /// Base64 (standard, padded) of the 12-byte nonce.
    pub nonce: String,
    /// Base64 (standard, padded) of ciphertext || 16-byte GCM tag.
    pub ciphertext: String,
}

/// Sealing and opening failures. `Open` is the one fail-closed answer to every
/// wrong authid or hand-off token, tampered row, moved row or unknown key
/// version, so callers answer them all alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    Open,
    Random,
    Crypto,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SealError::Open => "sealed value does not open with this authid or token",
            SealError::Random => "random number generator unavailable",
            SealError::Crypto => "cipher failure",
        })
    }
}

impl From<SealError> for crate::error::BrokerError {
    /// Whatever does not open is, to the client, an authid it cannot use (one
    /// answer for unknown, wrong, tampered and moved); anything else is ours.
    fn from(e: SealError) -> Self {
        match e {
            SealError::Open => crate::error::BrokerError::UnknownAuthId,
            SealError::Random | SealError::Crypto => {
                crate::error::BrokerError::internal(format!("seal: {e}"))
            }
        }
    }
}

impl From<KeyConfigError> for crate::error::BrokerError {
    fn from(e: KeyConfigError) -> Self {
        crate::error::BrokerError::Misconfigured { what: e.0 }
    }
}

/// One `<version>:<secret>` entry (surrounding whitespace ignored). The secret
/// is everything after the first `:`, taken as its UTF-8 bytes.
fn parse_one(entry: &str) -> Result<ServerSecret, KeyConfigError> {
    let (version, secret) = entry.trim().split_once(':').ok_or(KeyConfigError(
        "a sealing secret must be <version>:<secret>",
    ))?;
    let version = Some(version)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v >= 1)
        .ok_or(KeyConfigError(
            "a sealing secret version must be an integer from 1 to 4294967295",
        ))?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(KeyConfigError("a sealing secret must be at least 32 bytes"));
    }
    ServerSecret::new(version, secret.as_bytes())
}

impl ServerKeys {
    /// `current` is `<version>:<secret>` (version a `u32` ≥ 1, secret ≥ 32
    /// bytes); `previous` a comma-separated list of the same, for rotation
    /// (empty entries and whitespace around entries ignored). A malformed
    /// entry anywhere refuses the whole configuration.
    ///
    /// Why repeats are accepted: SECURITY.md's rotation puts the current value
    /// into `SEALING_SECRETS_PREVIOUS` (step 2) while `SEALING_SECRET` still
    /// holds it, and only then replaces `SEALING_SECRET` (step 3). Every
    /// configuration an operator passes through must keep the broker up, since
    /// refusing one answers 500 on every route that needs the keys (and a
    /// callback that already spent its code loses the grant). So an entry equal
    /// to the current one, or to an earlier previous one (same version and
    /// same secret), is simply dropped: it adds nothing.
    ///
    /// Why a version with two different secrets is kept rather than refused
    /// (e.g. `SEALING_SECRET=1:B` with `SEALING_SECRETS_PREVIOUS=1:A`, a new
    /// secret put in without bumping the version): refusing would take the
    /// broker down, and dropping either secret would strand the rows sealed
    /// under it. Both stay: the current one seals, and lookup and opening try
    /// every secret of a row's version. Nothing is weakened: each secret still
    /// derives its own subkeys, a row's key hash is an HMAC under the secret
    /// that sealed it (so it names that secret), and a hand-off that is tried
    /// under a wrong secret fails the GCM tag check like any wrong key. The
    /// cost is only that `key_version` no longer tells the two apart, which is
    /// why SECURITY.md asks to move on to a fresh version.
    pub fn parse(current: &str, previous: Option<&str>) -> Result<ServerKeys, KeyConfigError> {
        let current = parse_one(current)?;
        let mut previous_keys: Vec<ServerSecret> = Vec::new();
        for entry in previous
            .unwrap_or("")
            .split(',')
            .filter(|e| !e.trim().is_empty())
        {
            let k = parse_one(entry)?;
            let repeat = std::iter::once(&current)
                .chain(&previous_keys)
                .any(|known| known.is(&k));
            if !repeat {
                previous_keys.push(k);
            }
        }
        Ok(ServerKeys {
            current,
            previous: previous_keys,
        })
    }

    pub fn current_version(&self) -> u32 {
        self.current.version
    }

    /// The versions of `SEALING_SECRETS_PREVIOUS`, in its order (the doctor
    /// shows them; never a secret).
    pub fn previous_versions(&self) -> Vec<u32> {
        self.previous.iter().map(|k| k.version).collect()
    }

    fn all(&self) -> impl Iterator<Item = &ServerSecret> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// Every secret that carries `version`, current first: one in a
    /// well-kept configuration, more after a version was reused (see
    /// [`ServerKeys::parse`]), none for a version no longer configured.
    fn of_version(&self, version: u32) -> impl Iterator<Item = &ServerSecret> {
        self.all().filter(move |k| k.version == version)
    }

    /// `v<version>:<hex>`: the keyed hash of `provider`'s account
    /// `account_id` under the current version, as a grant records it.
    pub fn account_hash(&self, provider: &str, account_id: &str) -> String {
        format!(
            "v{}:{}",
            self.current.version,
            self.current.account_hash(provider, account_id)
        )
    }

    /// Whether `recorded` ([`ServerKeys::account_hash`], under whichever
    /// version was current then) names `provider`'s account `account_id`.
    /// Constant time in the hash; `false` for a version no longer configured.
    pub fn same_account(&self, recorded: &str, provider: &str, account_id: &str) -> bool {
        let Some((version, hash)) = recorded
            .strip_prefix('v')
            .and_then(|r| r.split_once(':'))
            .and_then(|(v, h)| Some((v.parse::<u32>().ok()?, h)))
        else {
            return false;
        };
        self.of_version(version).any(|k| {
            ct_eq(
                k.account_hash(provider, account_id).as_bytes(),
                hash.as_bytes(),
            )
        })
    }

    /// The row key of `authid` under the current version.
    pub fn key_hash(&self, authid: &AuthId) -> KeyHash {
        KeyHash::new(self.current.key_hash(authid.key_id()))
    }

    /// (version, key hash) under every configured secret, current first, so a
    /// row sealed before a rotation (or under another secret of a reused
    /// version) is still found.
    pub fn lookup_hashes(&self, authid: &AuthId) -> Vec<(u32, KeyHash)> {
        self.all()
            .map(|k| (k.version, KeyHash::new(k.key_hash(authid.key_id()))))
            .collect()
    }

    /// Seals `plaintext` under the current version: `(key hash, sealed)`.
    ///
    /// The nonce is 96 fresh CSPRNG bits (NIST SP 800-38D §8.2.2). The same key
    /// seals every write of a grant (it is derived from the authid, which never
    /// changes), so a fixed nonce would repeat and a counter would need a
    /// durable, race-free counter per row; a repeated GCM nonce under one key
    /// leaks the XOR of plaintexts and the authentication key. Random nonces
    /// keep the collision chance negligible far beyond the SP 800-38D §8.3
    /// limit of 2^32 invocations per key, and one grant is written at most a few
    /// times an hour.
    pub fn seal(
        &self,
        authid: &AuthId,
        provider: &str,
        plaintext: &[u8],
    ) -> Result<(KeyHash, Sealed), SealError> {
        self.seal_with_nonce(authid, provider, plaintext, fresh_nonce()?)
    }

    /// [`ServerKeys::seal`] with a given nonce; private so that only tests
    /// (known-answer vectors) can choose one.
    fn seal_with_nonce(
        &self,
        authid: &AuthId,
        provider: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<(KeyHash, Sealed), SealError> {
        let k = &self.current;
        let key_hash = k.key_hash(authid.key_id());
        let aad = k.grant_aad(&key_hash, provider);
        let (nonce, ciphertext) = aead_seal(
            &k.grant_key(authid, &key_hash)?,
            aad.as_bytes(),
            plaintext,
            nonce,
        )?;
        Ok((
            KeyHash::new(key_hash),
            Sealed {
                key_version: k.version,
                nonce,
                ciphertext,
            },
        ))
    }

    /// Opens the row stored under `key_hash`. Fails closed with
    /// [`SealError::Open`] on an unknown version, a key hash that is not this
    /// authid's under that version (a moved row), bad encoding, a nonce that is
    /// not 12 bytes, a wrong authid or any tampering (the GCM tag check).
    ///
    /// The secret is the one of the row's version under which this authid's
    /// key hash is the row's: the key hash names the secret that sealed the
    /// row, even when a reused version has two.
    pub fn open(
        &self,
        authid: &AuthId,
        provider: &str,
        key_hash: &KeyHash,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        let (k, expected) = self
            .of_version(sealed.key_version)
            .map(|k| (k, k.key_hash(authid.key_id())))
            .find(|(_, expected)| ct_eq(expected.as_bytes(), key_hash.as_str().as_bytes()))
            .ok_or(SealError::Open)?;
        let aad = k.grant_aad(&expected, provider);
        aead_open(
            &k.grant_key(authid, &expected)?,
            aad.as_bytes(),
            &sealed.nonce,
            &sealed.ciphertext,
        )
    }

    /// Seals a pending authid for the holder of hand-off token `token`, under the current version.
    ///
    /// The nonce is 96 fresh CSPRNG bits. The key is fixed for a given token and
    /// version, and the same token can be sealed to more than once (the UI may
    /// start a second login with the token it is already polling), so a fixed
    /// nonce could repeat under one key, which breaks GCM outright. A random
    /// nonce is safe here because a key seals only the handful of logins that
    /// carry one token within its 15-minute life, vastly fewer than the
    /// 2^32 random-nonce invocations SP 800-38D §8.3 allows per key.
    pub fn seal_handoff(&self, token: &str, authid: &str) -> Result<Sealed, SealError> {
        self.seal_handoff_with_nonce(token, authid, fresh_nonce()?)
    }

    /// [`ServerKeys::seal_handoff`] with a given nonce; private so that only
    /// tests (known-answer vectors) can choose one.
    fn seal_handoff_with_nonce(
        &self,
        token: &str,
        authid: &str,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Sealed, SealError> {
        let k = &self.current;
        let aad = k.handoff_aad(token);
        let (nonce, ciphertext) = aead_seal(
            &k.handoff_key(token)?,
            aad.as_bytes(),
            authid.as_bytes(),
            nonce,
        )?;
        Ok(Sealed {
            key_version: k.version,
            nonce,
            ciphertext,
        })
    }

    /// Seals `plaintext` for the holder of `secret` for `purpose`, under the
    /// current version, with a fresh random nonce (each secret is used for a
    /// handful of seals at most, far below SP 800-38D §8.3's limit).
    pub fn seal_pending(
        &self,
        purpose: Pending,
        secret: &str,
        plaintext: &[u8],
    ) -> Result<Sealed, SealError> {
        let k = &self.current;
        let aad = k.pending_aad(purpose, secret);
        let (nonce, ciphertext) = aead_seal(
            &k.pending_key(purpose, secret)?,
            aad.as_bytes(),
            plaintext,
            fresh_nonce()?,
        )?;
        Ok(Sealed {
            key_version: k.version,
            nonce,
            ciphertext,
        })
    }

    /// Opens a [`ServerKeys::seal_pending`] value; [`SealError::Open`] for a
    /// wrong secret or purpose, an unknown version, tampering or bad encoding.
    /// Every secret of the row's version is tried (as for hand-offs).
    pub fn open_pending(
        &self,
        purpose: Pending,
        secret: &str,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        for k in self.of_version(sealed.key_version) {
            let aad = k.pending_aad(purpose, secret);
            match aead_open(
                &k.pending_key(purpose, secret)?,
                aad.as_bytes(),
                &sealed.nonce,
                &sealed.ciphertext,
            ) {
                Ok(plain) => return Ok(plain),
                Err(SealError::Open) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SealError::Open)
    }

    /// Opens it under the version in `sealed.key_version`; `SealError::Open` for an unknown version, wrong token, tampering, bad encoding.
    ///
    /// A hand-off row carries no key hash to name its secret, so when a reused
    /// version has two secrets each is tried, current first. Trying a wrong one
    /// is safe: its key is independent of the sealing key, so the GCM tag check
    /// fails. Two candidate keys at most double a forger's negligible chance,
    /// and a ciphertext crafted to open under both needs both secrets.
    ///
    /// A plaintext that is not UTF-8 (which a well-formed seal never makes)
    /// also answers [`SealError::Open`].
    pub fn open_handoff(&self, token: &str, sealed: &Sealed) -> Result<String, SealError> {
        for k in self.of_version(sealed.key_version) {
            let aad = k.handoff_aad(token);
            match aead_open(
                &k.handoff_key(token)?,
                aad.as_bytes(),
                &sealed.nonce,
                &sealed.ciphertext,
            ) {
                Ok(plain) => return String::from_utf8(plain).map_err(|_| SealError::Open),
                Err(SealError::Open) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authid::{parse_authid, ParsedAuthId};

    const S1: &str = "1:server-secret-one-0123456789abcdefghij";
    const S2: &str = "2:server-secret-two-0123456789abcdefghij";
    const AUTHID: &str =
        "00112233445566778899aabbccddeeff:SECRET-half_of.the-authid-0123456789abcdef";

    /// The known-answer vectors below were computed (in Python) for authids
    /// whose secrets predate the strict spellings of `crate::authid`, so they
    /// are built here without the parser's format check: the construction
    /// only ever sees the keyid bytes and the secret string.
    fn authid(s: &str) -> AuthId {
        if let Ok(ParsedAuthId::V1(a)) = parse_authid(s) {
            return a;
        }
        let (k, secret) = s.split_once(':').unwrap();
        AuthId::for_tests(k, secret)
    }

    fn keys(cur: &str, prev: Option<&str>) -> ServerKeys {
        ServerKeys::parse(cur, prev).unwrap()
    }

    #[test]
    fn a_pending_value_opens_only_with_its_secret_purpose_and_server_secret() {
        let k = keys(S1, None);
        let sealed = k
            .seal_pending(Pending::AuthorizationCode, "the-code", b"authid")
            .unwrap();
        assert_eq!(
            k.open_pending(Pending::AuthorizationCode, "the-code", &sealed)
                .unwrap(),
            b"authid"
        );
        assert!(!sealed.ciphertext.contains("authid"));
        let wrong = [
            k.open_pending(Pending::AuthorizationCode, "other-code", &sealed),
            k.open_pending(Pending::DeviceCode, "the-code", &sealed),
            k.open_pending(Pending::ClientState, "the-code", &sealed),
            k.open_pending(Pending::GateBase, "the-code", &sealed),
            keys(S2, None).open_pending(Pending::AuthorizationCode, "the-code", &sealed),
        ];
        for w in wrong {
            assert_eq!(w, Err(SealError::Open));
        }
        // Still opens after a rotation that keeps the old version.
        let rotated = keys(S2, Some(S1));
        assert!(rotated
            .open_pending(Pending::AuthorizationCode, "the-code", &sealed)
            .is_ok());
    }

    // Known answers computed independently with Python's `cryptography` package
    // (HKDF, HMAC, AESGCM): `python3 docs/kat.py` regenerates the KAT_* values.
    const KAT_SERVER_SECRET: &[u8] = b"server-secret-one-0123456789abcdefghij";
    const KAT_PLAINTEXT: &[u8] = br#"{"refresh_token":"RT"}"#;

    #[test]
    fn known_answer_server_subkeys() {
        let sub = subkeys(KAT_SERVER_SECRET).unwrap();
        assert_eq!(random::hex(&sub.lookup_key), KAT_LOOKUP_KEY);
        assert_eq!(random::hex(&sub.seal_salt), KAT_SEAL_SALT);
        assert_eq!(random::hex(&sub.handoff_salt), KAT_HANDOFF_SALT);
        assert_eq!(
            random::hex(&keys(S1, None).current.seal_salt),
            KAT_SEAL_SALT
        );
    }

    #[test]
    fn known_answer_key_hash_and_grant_key() {
        let k = keys(S1, None);
        let a = authid(AUTHID);
        assert_eq!(k.key_hash(&a).as_str(), KAT_KEY_HASH);
        assert_eq!(k.lookup_hashes(&a), vec![(1, KeyHash::new(KAT_KEY_HASH))]);
        let grant_key = k.current.grant_key(&a, KAT_KEY_HASH).unwrap();
        assert_eq!(random::hex(&grant_key), KAT_GRANT_KEY);
    }

    #[test]
    fn known_answer_seal_with_fixed_nonce_and_open_of_python_ciphertext() {
        let k = keys(S1, None);
        let a = authid(AUTHID);
        let (kh, sealed) = k
            .seal_with_nonce(&a, "box.com", KAT_PLAINTEXT, [7u8; 12])
            .unwrap();
        let python = Sealed {
            key_version: 1,
            nonce: "BwcHBwcHBwcHBwcH".into(),
            ciphertext: KAT_CIPHERTEXT.into(),
        };
        assert_eq!(kh.as_str(), KAT_KEY_HASH);
        assert_eq!(sealed, python);
        assert_eq!(
            k.open(&a, "box.com", &KeyHash::new(KAT_KEY_HASH), &python)
                .unwrap(),
            KAT_PLAINTEXT
        );
    }

    #[test]
    fn seal_then_open_round_trips() {
        let k = keys(S1, None);
        let a = authid(AUTHID);
        let (kh, sealed) = k.seal(&a, "demo", b"grant").unwrap();
        assert_eq!(k.open(&a, "demo", &kh, &sealed).unwrap(), b"grant");
    }

    #[test]
    fn two_seals_of_the_same_grant_differ() {
        let k = keys(S1, None);
        let a = authid(AUTHID);
        let (_, x) = k.seal(&a, "demo", b"grant").unwrap();
        let (_, y) = k.seal(&a, "demo", b"grant").unwrap();
        assert_ne!(x.nonce, y.nonce);
        assert_ne!(x.ciphertext, y.ciphertext);
    }

    #[test]
    fn wrong_authid_secret_fails_closed() {
        let k = keys(S1, None);
        let (kh, sealed) = k.seal(&authid(AUTHID), "demo", b"grant").unwrap();
        let wrong = AUTHID.replace("SECRET", "SECRFT");
        assert_eq!(
            k.open(&authid(&wrong), "demo", &kh, &sealed),
            Err(SealError::Open)
        );
    }

    #[test]
    fn tampering_fails_closed() {
        let k = keys(S1, None);
        let a = authid(AUTHID);
        let (kh, sealed) = k.seal(&a, "demo", b"grant payload").unwrap();
        let mut ct = B64.decode(&sealed.ciphertext).unwrap();
        ct[0] ^= 1;
        let flipped = Sealed {
            ciphertext: B64.encode(&ct),
            ..sealed.clone()
        };
        let truncated = Sealed {
            ciphertext: B64.encode(&ct[..ct.len() - 1]),
            ..sealed.clone()
        };
        let mut n = B64.decode(&sealed.nonce).unwrap();
        n[0] ^= 1;
        let renonced = Sealed {
            nonce: B64.encode(&n),
            ..sealed.clone()
        };
        let short_nonce = Sealed {
            nonce: B64.encode([0u8; 8]),
            ..sealed.clone()
        };
        let bad_b64 = Sealed {
            ciphertext: "!!not base64!!".into(),
            ..sealed.clone()
        };
        for bad in [flipped, truncated, renonced, short_nonce, bad_b64] {
            assert_eq!(k.open(&a, "demo", &kh, &bad), Err(SealError::Open));
        }
    }

    #[test]
    fn row_opened_as_another_provider_fails_closed() {
        let k = keys(S1, None);
        let a = authid(AUTHID);
        let (kh, sealed) = k.seal(&a, "demo", b"grant").unwrap();
        assert_eq!(k.open(&a, "box.com", &kh, &sealed), Err(SealError::Open));
    }

    #[test]
    fn row_moved_under_another_key_hash_fails_closed() {
        let k = keys(S1, None);
        let victim = authid(AUTHID);
        let attacker = AuthId::generate(crate::ids::Shard::FIRST).unwrap();
        let (victim_kh, sealed) = k.seal(&victim, "demo", b"grant").unwrap();
        // The attacker's authid presented against the victim's row...
        assert_eq!(
            k.open(&attacker, "demo", &victim_kh, &sealed),
            Err(SealError::Open)
        );
        // ...and the victim's row copied under the attacker's key hash.
        let attacker_kh = k.key_hash(&attacker);
        assert_eq!(
            k.open(&attacker, "demo", &attacker_kh, &sealed),
            Err(SealError::Open)
        );
        assert_eq!(
            k.open(&victim, "demo", &attacker_kh, &sealed),
            Err(SealError::Open)
        );
    }

    #[test]
    fn changed_key_version_fails_closed() {
        let k = keys(S2, Some(S1));
        let a = authid(AUTHID);
        let (kh, sealed) = k.seal(&a, "demo", b"grant").unwrap();
        let relabelled = Sealed {
            key_version: 1,
            ..sealed.clone()
        };
        assert_eq!(k.open(&a, "demo", &kh, &relabelled), Err(SealError::Open));
        let unknown = Sealed {
            key_version: 9,
            ..sealed
        };
        assert_eq!(k.open(&a, "demo", &kh, &unknown), Err(SealError::Open));
    }

    #[test]
    fn rotation_keeps_old_rows_open_and_seals_new_ones_under_the_current_version() {
        let a = authid(AUTHID);
        let old = keys(S1, None);
        let (old_kh, old_sealed) = old.seal(&a, "demo", b"grant").unwrap();
        let rotated = keys(S2, Some(S1));
        let hashes = rotated.lookup_hashes(&a);
        assert_eq!(hashes[0].0, 2);
        assert!(hashes.contains(&(1, old_kh.clone())));
        assert_eq!(
            rotated.open(&a, "demo", &old_kh, &old_sealed).unwrap(),
            b"grant"
        );
        let (new_kh, new_sealed) = rotated.seal(&a, "demo", b"grant").unwrap();
        assert_eq!(new_sealed.key_version, 2);
        assert_ne!(new_kh, old_kh);
        assert!(rotated.open(&a, "demo", &new_kh, &new_sealed).is_ok());
        // Keys that no longer know v1 cannot open the old row.
        let forgotten = keys(S2, None);
        assert_eq!(
            forgotten.open(&a, "demo", &old_kh, &old_sealed),
            Err(SealError::Open)
        );
    }

    #[test]
    fn bad_key_configuration_is_refused_without_echo() {
        let secret = "x".repeat(40);
        let cases = [
            (format!("0:{secret}"), None),
            (format!("v1:{secret}"), None),
            (format!("+1:{secret}"), None),
            (format!("-1:{secret}"), None),
            (format!(":{secret}"), None),
            (format!("4294967296:{secret}"), None),
            (secret.clone(), None),
            (String::new(), None),
            ("1:short".to_string(), None),
            (format!("1:{}", &secret[..31]), None),
            // A malformed previous entry refuses the whole configuration, even
            // next to well-formed ones and repeats of the current entry.
            (format!("1:{secret}"), Some(format!("2:{secret},{secret}"))),
            (format!("1:{secret}"), Some(format!("1:{secret},2:short"))),
            (format!("2:{secret}"), Some(format!("0:{secret}"))),
            (format!("2:{secret}"), Some(format!("v1:{secret}"))),
            (format!("2:{secret}"), Some(format!("1:{secret},1"))),
        ];
        for (cur, prev) in cases {
            let err = ServerKeys::parse(&cur, prev.as_deref()).unwrap_err();
            assert!(!err.to_string().contains(&secret[..32]), "{cur:?}");
            assert!(!format!("{err:?}").contains(&secret[..32]), "{cur:?}");
            // Answered as a clear operator error: 500 `server_misconfigured`.
            let answer = crate::error::BrokerError::from(err);
            assert_eq!(
                (answer.status(), answer.code()),
                (500, "server_misconfigured")
            );
        }
    }

    /// The rows a test seals before a configuration change: a grant (with its
    /// key hash) and a pending hand-off.
    struct Rows {
        key_hash: KeyHash,
        grant: Sealed,
        handoff: Sealed,
    }

    fn seal_rows(k: &ServerKeys) -> Rows {
        let (key_hash, grant) = k.seal(&authid(AUTHID), "demo", b"grant").unwrap();
        Rows {
            key_hash,
            grant,
            handoff: k.seal_handoff("tok", AUTHID).unwrap(),
        }
    }

    fn opens(k: &ServerKeys, rows: &Rows) -> bool {
        let grant = k.open(&authid(AUTHID), "demo", &rows.key_hash, &rows.grant);
        let found = k
            .lookup_hashes(&authid(AUTHID))
            .contains(&(rows.grant.key_version, rows.key_hash.clone()));
        let handoff = k.open_handoff("tok", &rows.handoff);
        match (grant, handoff) {
            (Ok(g), Ok(h)) => {
                assert!(found, "an opening row is also found by lookup");
                assert_eq!((g.as_slice(), h.as_str()), (&b"grant"[..], AUTHID));
                true
            }
            (Err(SealError::Open), Err(SealError::Open)) => false,
            other => panic!("grant and hand-off disagree: {other:?}"),
        }
    }

    #[test]
    fn the_documented_rotation_steps_all_parse_and_keep_every_row_open() {
        // SECURITY.md "Rotating the server secret", one configuration per step.
        let step0 = keys(S1, None);
        let at_0 = seal_rows(&step0);
        // Step 2: the current value is also the previous one. It adds nothing:
        // lookups, keys and seals are exactly step 0's.
        let step2 = ServerKeys::parse(S1, Some(S1)).unwrap();
        assert_eq!(
            step2.lookup_hashes(&authid(AUTHID)),
            step0.lookup_hashes(&authid(AUTHID))
        );
        assert_eq!(step2.current_version(), 1);
        assert!(opens(&step2, &at_0));
        let at_2 = seal_rows(&step2);
        assert_eq!(
            (at_2.key_hash.clone(), at_2.grant.key_version),
            (at_0.key_hash.clone(), 1)
        );
        assert!(opens(&step0, &at_2), "rolling back to step 0 loses nothing");
        // Step 3: the new version seals, the old one still opens.
        let step3 = keys(S2, Some(S1));
        assert!(opens(&step3, &at_0) && opens(&step3, &at_2));
        let at_3 = seal_rows(&step3);
        assert_eq!(at_3.grant.key_version, 2);
        assert_eq!(at_3.handoff.key_version, 2);
        assert_ne!(at_3.key_hash, at_0.key_hash, "re-keyed under v2");
        assert!(opens(&step3, &at_3));
        // Step 4 re-seals rows as at_3. Step 5: the new version alone opens
        // the re-sealed rows; a row left under v1 would be stranded, which is
        // why step 5 waits until none is left.
        let step5 = keys(S2, None);
        assert!(opens(&step5, &at_3));
        assert!(!opens(&step5, &at_0));
    }

    #[test]
    fn repeated_entries_are_deduplicated_and_change_nothing() {
        let a = authid(AUTHID);
        let plain = keys(S2, Some(S1));
        let s2_padded = format!(" {S2} ");
        for previous in [
            format!("{S1},{S1}"),
            format!("{S2},{S1}"),
            format!("{S1}, {S2} ,{S1},,"),
            format!("{s2_padded},{S1}"),
        ] {
            let k = ServerKeys::parse(S2, Some(&previous)).unwrap();
            assert_eq!(k.lookup_hashes(&a), plain.lookup_hashes(&a), "{previous}");
            assert_eq!(k.current_version(), 2);
        }
        // A leading zero names the same version: `01:S` is `1:S` again.
        let secret = "z".repeat(32);
        let k = ServerKeys::parse(&format!("1:{secret}"), Some(&format!("01:{secret}"))).unwrap();
        assert_eq!(k.lookup_hashes(&a).len(), 1);
    }

    const A1: &str = "1:secret-a-of-the-same-version-0123456789";
    const B1: &str = "1:secret-b-of-the-same-version-0123456789";

    #[test]
    fn a_same_version_slip_keeps_rows_under_both_secrets_open() {
        // The operator put a new secret in without bumping the version.
        let a = authid(AUTHID);
        let under_a = seal_rows(&keys(A1, None));
        let slip = ServerKeys::parse(B1, Some(A1)).unwrap();
        assert_eq!(slip.current_version(), 1);
        let hashes = slip.lookup_hashes(&a);
        assert_eq!(hashes.len(), 2, "both secrets are kept");
        assert_eq!(hashes[0], (1, slip.key_hash(&a)), "current first");
        assert!(opens(&slip, &under_a));
        // The current secret seals; what it seals opens too, under its own key hash.
        let under_b = seal_rows(&slip);
        assert_eq!(under_b.key_hash, keys(B1, None).key_hash(&a));
        assert_ne!(under_b.key_hash, under_a.key_hash);
        assert!(opens(&slip, &under_b));
        // Listed the other way round (a slip while undoing the slip), the same.
        let undone = ServerKeys::parse(A1, Some(B1)).unwrap();
        assert!(opens(&undone, &under_a) && opens(&undone, &under_b));
        // The way out is a fresh version that keeps both until no v1 row is left.
        let recovered = ServerKeys::parse(
            "3:third-secret-0123456789abcdefghijklmn",
            Some(&format!("{B1},{A1}")),
        )
        .unwrap();
        assert!(opens(&recovered, &under_a) && opens(&recovered, &under_b));
        assert_eq!(seal_rows(&recovered).grant.key_version, 3);
    }

    #[test]
    fn a_same_version_slip_still_fails_closed_on_moved_tampered_and_wrong() {
        let a = authid(AUTHID);
        let under_a = seal_rows(&keys(A1, None));
        let slip = ServerKeys::parse(B1, Some(A1)).unwrap();
        let b_hash = slip.key_hash(&a);
        // A's row presented under B's key hash (a moved row) does not open.
        assert_eq!(
            slip.open(&a, "demo", &b_hash, &under_a.grant),
            Err(SealError::Open)
        );
        // Nor under another authid, or with the wrong hand-off token.
        let other = AuthId::generate(crate::ids::Shard::FIRST).unwrap();
        assert_eq!(
            slip.open(&other, "demo", &under_a.key_hash, &under_a.grant),
            Err(SealError::Open)
        );
        assert_eq!(
            slip.open_handoff("tol", &under_a.handoff),
            Err(SealError::Open)
        );
        // Nor tampered, under either secret.
        let mut ct = B64.decode(&under_a.handoff.ciphertext).unwrap();
        ct[0] ^= 1;
        let flipped = Sealed {
            ciphertext: B64.encode(&ct),
            ..under_a.handoff.clone()
        };
        assert_eq!(slip.open_handoff("tok", &flipped), Err(SealError::Open));
        // A secret that is neither A nor B opens nothing of version 1.
        let stranger = keys("1:neither-a-nor-b-secret-0123456789abcdef", None);
        assert!(!opens(&stranger, &under_a));
    }

    #[test]
    fn key_configuration_accepts_rotation_lists_and_ignores_whitespace() {
        let secret = "y".repeat(32);
        let k = ServerKeys::parse(
            &format!("3:{secret}\n"),
            Some(&format!(" 2:{secret} ,, 1:{secret}:with:colons , ")),
        )
        .unwrap();
        assert_eq!(k.current_version(), 3);
        let versions: Vec<u32> = k
            .lookup_hashes(&authid(AUTHID))
            .iter()
            .map(|h| h.0)
            .collect();
        assert_eq!(versions, [3, 2, 1]);
        // Length counts UTF-8 bytes: 16 two-byte chars are 32 bytes.
        assert!(ServerKeys::parse(&format!("1:{}", "é".repeat(16)), None).is_ok());
        assert!(ServerKeys::parse(&format!("1:{secret}"), Some("")).is_ok());
        assert!(ServerKeys::parse(&format!("4294967295:{secret}"), None).is_ok());
    }

    #[test]
    fn debug_of_keys_shows_no_secret_material() {
        let k = keys(S1, None);
        let shown = format!("{k:?}");
        assert!(!shown.contains("server-secret"));
        assert!(!shown.contains(KAT_LOOKUP_KEY) && !shown.contains(KAT_SEAL_SALT));
        assert!(!shown.contains(KAT_HANDOFF_SALT));
        assert!(shown.contains("v1"));
    }

    // Pending hand-offs (Duplicati's old UI, `/fetch`).

    const KAT_HANDOFF_TOKEN: &str = "handoff-token_0123.456~789";

    #[test]
    fn known_answer_handoff_key_and_seal_with_fixed_nonce_and_open_of_python_ciphertext() {
        let k = keys(S1, None);
        let key = k.current.handoff_key(KAT_HANDOFF_TOKEN).unwrap();
        assert_eq!(random::hex(&key), KAT_HANDOFF_KEY);
        let sealed = k
            .seal_handoff_with_nonce(KAT_HANDOFF_TOKEN, AUTHID, [9u8; 12])
            .unwrap();
        let python = Sealed {
            key_version: 1,
            nonce: "CQkJCQkJCQkJCQkJ".into(),
            ciphertext: KAT_HANDOFF_CIPHERTEXT.into(),
        };
        assert_eq!(sealed, python);
        assert_eq!(k.open_handoff(KAT_HANDOFF_TOKEN, &python).unwrap(), AUTHID);
    }

    #[test]
    fn a_pending_authid_opens_only_with_its_token_and_the_server_keys() {
        let k = keys(S1, None);
        let sealed = k.seal_handoff("tok", AUTHID).unwrap();
        assert_eq!(sealed.key_version, 1);
        assert_eq!(k.open_handoff("tok", &sealed).unwrap(), AUTHID);
        // Another token, even one differing in a single character...
        assert_eq!(k.open_handoff("tok2", &sealed), Err(SealError::Open));
        assert_eq!(k.open_handoff("tol", &sealed), Err(SealError::Open));
        // ...or the right token under another server secret of the same version.
        let other = keys("1:a-different-server-secret-0123456789", None);
        assert_eq!(other.open_handoff("tok", &sealed), Err(SealError::Open));
    }

    #[test]
    fn a_pending_handoff_survives_a_server_secret_rotation() {
        let before = keys(S1, None);
        let sealed = before.seal_handoff("tok", AUTHID).unwrap();
        let rotated = keys(S2, Some(S1));
        assert_eq!(rotated.open_handoff("tok", &sealed).unwrap(), AUTHID);
        // New hand-offs are sealed under the current version only.
        let fresh = rotated.seal_handoff("tok", AUTHID).unwrap();
        assert_eq!(fresh.key_version, 2);
        assert_eq!(before.open_handoff("tok", &fresh), Err(SealError::Open));
        // Once v1 is dropped from the previous secrets, its hand-offs are gone.
        let forgotten = keys(S2, None);
        assert_eq!(forgotten.open_handoff("tok", &sealed), Err(SealError::Open));
    }

    #[test]
    fn a_tampered_or_unknown_version_handoff_fails_closed() {
        let k = keys(S2, Some(S1));
        let sealed = k.seal_handoff("tok", AUTHID).unwrap();
        let mut ct = B64.decode(&sealed.ciphertext).unwrap();
        ct[0] ^= 1;
        let flipped = Sealed {
            ciphertext: B64.encode(&ct),
            ..sealed.clone()
        };
        let truncated = Sealed {
            ciphertext: B64.encode(&ct[..ct.len() - 1]),
            ..sealed.clone()
        };
        let mut n = B64.decode(&sealed.nonce).unwrap();
        n[0] ^= 1;
        let renonced = Sealed {
            nonce: B64.encode(&n),
            ..sealed.clone()
        };
        let short_nonce = Sealed {
            nonce: B64.encode([0u8; 8]),
            ..sealed.clone()
        };
        let bad_b64 = Sealed {
            ciphertext: "!!not base64!!".into(),
            ..sealed.clone()
        };
        let bad_nonce_b64 = Sealed {
            nonce: "!!".into(),
            ..sealed.clone()
        };
        // A known but wrong version (v1 is still configured) and an unknown one.
        let relabelled = Sealed {
            key_version: 1,
            ..sealed.clone()
        };
        let unknown = Sealed {
            key_version: 9,
            ..sealed.clone()
        };
        for bad in [
            flipped,
            truncated,
            renonced,
            short_nonce,
            bad_b64,
            bad_nonce_b64,
            relabelled,
            unknown,
        ] {
            assert_eq!(k.open_handoff("tok", &bad), Err(SealError::Open), "{bad:?}");
        }
        assert_eq!(k.open_handoff("tok", &sealed).unwrap(), AUTHID);
    }

    #[test]
    fn each_handoff_seal_uses_a_fresh_nonce() {
        let k = keys(S1, None);
        let x = k.seal_handoff("tok", AUTHID).unwrap();
        let y = k.seal_handoff("tok", AUTHID).unwrap();
        assert_ne!(x.nonce, y.nonce);
        assert_ne!(x.ciphertext, y.ciphertext);
        assert_eq!(k.open_handoff("tok", &x).unwrap(), AUTHID);
        assert_eq!(k.open_handoff("tok", &y).unwrap(), AUTHID);
    }

    #[test]
    fn a_sealed_handoff_never_contains_the_authid_in_the_clear() {
        let k = keys(S1, None);
        let sealed = k.seal_handoff("tok", AUTHID).unwrap();
        let ct = B64.decode(&sealed.ciphertext).unwrap();
        // GCM adds exactly the 16-byte tag; the authid's bytes appear nowhere.
        assert_eq!(ct.len(), AUTHID.len() + 16);
        assert!(!ct.windows(6).any(|w| w == b"SECRET"));
        let shown = format!("{sealed:?}");
        assert!(!shown.contains("SECRET") && !shown.contains(&B64.encode(AUTHID)[..16]));
    }

    #[test]
    fn a_handoff_and_a_grant_never_open_as_each_other() {
        // Separate salts, key labels and AAD labels: a hand-off row pasted into
        // the grants table (or back) does not open, even with matching inputs.
        let k = keys(S1, None);
        let a = authid(AUTHID);
        let handoff = k.seal_handoff(AUTHID, AUTHID).unwrap();
        let kh = k.key_hash(&a);
        assert_eq!(k.open(&a, "demo", &kh, &handoff), Err(SealError::Open));
        let (_, grant) = k.seal(&a, "demo", AUTHID.as_bytes()).unwrap();
        assert_eq!(k.open_handoff(AUTHID, &grant), Err(SealError::Open));
    }

    const KAT_LOOKUP_KEY: &str = "86d741514327ed71a099207df9b1d4344ed3e2c75194be60f68952dd29388bd5";
    const KAT_SEAL_SALT: &str = "a1d247fa2ba1e3a90212da0ff86a92fc14a3432d601a7a17e23683187501cfd7";
    const KAT_KEY_HASH: &str = "d6dbe316bef340ebea1ef95dd1c7a1112051ae5017d06292312e1eee9f260cf3";
    const KAT_GRANT_KEY: &str = "a28d8c835073b3db670bffd960ac5ca88766dcce147d74136d161f28667fcc09";
    const KAT_CIPHERTEXT: &str = "wG2YeoGAbMjX9NSX/2dHido0PcvuyWtNn5VJYGm0g8Yb7A6Ejpk=";
    const KAT_HANDOFF_SALT: &str =
        "88896732bf13db4ae7d73de970bde17f5134f430c5b5fc22e9f0169d3cd933f7";
    const KAT_HANDOFF_KEY: &str =
        "776b20d272a0bcdd6b3e742021bcf87e6da9762a98223434ad28191cab988773";
    const KAT_HANDOFF_CIPHERTEXT: &str = "PgnzuNgoEQxVbTgv0ZKtpZpgySW6GdSNMfqa0uHZpA0i18mzLCOdsD1N1WyAB0Zr2p0kVLRgvLaIxI726Dc3lbEjPoD4adY7OxjJU8rED/OKXU2ksohNnTV0yg==";
}
