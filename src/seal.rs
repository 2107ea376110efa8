//! Sealing grants: how a refresh token is stored so that a database dump is
//! useless without the authid, and an authid is useless without the server secret.
//!
//! Per server-secret version `v` (secret `S_v`, from a secret binding):
//! - `lookup_key_v = HKDF-SHA256(ikm = S_v, info = "oauth-broker/v1/lookup")` and
//!   `seal_salt_v = HKDF-SHA256(ikm = S_v, info = "oauth-broker/v1/seal-salt")`
//!   (RFC 5869; two independent 32-byte subkeys from one secret).
//! - Row key: `key_hash_v = hex(HMAC-SHA256(lookup_key_v, "oauth-broker/v1/keyid" || keyid))`.
//!   Only the keyid is hashed; the authid's secret half never leaves memory except
//!   as KDF input. Without `S_v` the hash cannot be linked to an authid.
//! - Grant key: `HKDF-SHA256(salt = seal_salt_v, ikm = authid secret,
//!   info = "oauth-broker/v1/grant-key" || key_hash_v)`. The secret half carries
//!   256 random bits, so a fast KDF is right: there is nothing to brute-force.
//!   The server-secret salt means a stolen authid alone cannot open a dumped row.
//! - AEAD: AES-256-GCM, AAD = `"oauth-broker/v1/grant|" || key_hash_v || "|" ||
//!   provider || "|" || v`, binding the ciphertext to its row: a row moved under
//!   another key hash, provider or version fails to open.
//! - Nonce: 96 fresh random bits on every seal. The same key seals every write
//!   of a grant (it is derived from the authid, which never changes), so a
//!   fixed or counter nonce would need a durable counter; random nonces stay far
//!   below the NIST SP 800-38D §8.3 bound of 2^32 messages per key, since one
//!   grant is written at most a few times an hour.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::authid::AuthId;
use crate::random;
use crate::secret::ct_eq;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MIN_SECRET_LEN: usize = 32;

/// One version of the server secret. `Debug` redacted.
pub struct ServerSecret {
    version: u32,
    lookup_key: [u8; 32],
    seal_salt: [u8; 32],
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerSecret(v{}, [redacted])", self.version)
    }
}

fn hkdf32(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 255*32-byte limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(salt, ikm).expand_multi_info(info, &mut out);
    out
}

impl ServerSecret {
    fn new(version: u32, secret: &[u8]) -> ServerSecret {
        ServerSecret {
            version,
            lookup_key: hkdf32(None, secret, &[b"oauth-broker/v1/lookup"]),
            seal_salt: hkdf32(None, secret, &[b"oauth-broker/v1/seal-salt"]),
        }
    }

    fn key_hash(&self, key_id: &[u8; 16]) -> String {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup_key) {
            Ok(m) => m,
            Err(_) => return String::new(), // unreachable: HMAC takes any key length
        };
        mac.update(b"oauth-broker/v1/keyid");
        mac.update(key_id);
        random::hex(&mac.finalize().into_bytes())
    }

    fn grant_key(&self, authid: &AuthId, key_hash: &str) -> [u8; 32] {
        hkdf32(
            Some(&self.seal_salt),
            authid.secret().secret().as_bytes(),
            &[b"oauth-broker/v1/grant-key", key_hash.as_bytes()],
        )
    }

    fn aad(&self, key_hash: &str, provider: &str) -> String {
        format!(
            "oauth-broker/v1/grant|{key_hash}|{provider}|{}",
            self.version
        )
    }
}

/// The server secrets: the current version seals, previous versions still open.
#[derive(Debug)]
pub struct ServerKeys {
    current: ServerSecret,
    previous: Vec<ServerSecret>,
}

/// Why the server-secret configuration was refused (never contains a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfigError(pub &'static str);

impl std::fmt::Display for KeyConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// A sealed grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_version: u32,
    /// Base64 (standard) of the 12-byte nonce.
    pub nonce: String,
    /// Base64 (standard) of ciphertext || GCM tag.
    pub ciphertext: String,
}

/// Sealing and opening failures. `Open` is the one fail-closed answer to every
/// wrong authid, tampered row, moved row or unknown key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    Open,
    Random,
    Crypto,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SealError::Open => "sealed grant does not open with this authid",
            SealError::Random => "random number generator unavailable",
            SealError::Crypto => "cipher failure",
        })
    }
}

fn parse_one(entry: &str) -> Result<ServerSecret, KeyConfigError> {
    let (version, secret) = entry.trim().split_once(':').ok_or(KeyConfigError(
        "a sealing secret must be <version>:<secret>",
    ))?;
    let version: u32 = version
        .parse()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or(KeyConfigError(
            "a sealing secret version must be an integer >= 1",
        ))?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(KeyConfigError(
            "a sealing secret must be at least 32 characters",
        ));
    }
    Ok(ServerSecret::new(version, secret.as_bytes()))
}

impl ServerKeys {
    /// `current` is `<version>:<secret>`; `previous` a comma-separated list of the same.
    pub fn parse(current: &str, previous: Option<&str>) -> Result<ServerKeys, KeyConfigError> {
        let current = parse_one(current)?;
        let mut previous_keys: Vec<ServerSecret> = Vec::new();
        for entry in previous
            .unwrap_or("")
            .split(',')
            .filter(|e| !e.trim().is_empty())
        {
            let k = parse_one(entry)?;
            if k.version == current.version || previous_keys.iter().any(|p| p.version == k.version)
            {
                return Err(KeyConfigError("sealing secret versions must be unique"));
            }
            previous_keys.push(k);
        }
        Ok(ServerKeys {
            current,
            previous: previous_keys,
        })
    }

    pub fn current_version(&self) -> u32 {
        self.current.version
    }

    fn version(&self, v: u32) -> Option<&ServerSecret> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.version == v)
    }

    /// The row key of `authid` under the current version.
    pub fn key_hash(&self, authid: &AuthId) -> String {
        self.current.key_hash(authid.key_id())
    }

    /// (version, key hash) under every known version, current first, so a row
    /// sealed before a rotation is still found.
    pub fn lookup_hashes(&self, authid: &AuthId) -> Vec<(u32, String)> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| (k.version, k.key_hash(authid.key_id())))
            .collect()
    }

    /// Seals under the current version with a fresh nonce: (key hash, sealed).
    pub fn seal(
        &self,
        authid: &AuthId,
        provider: &str,
        plaintext: &[u8],
    ) -> Result<(String, Sealed), SealError> {
        let mut nonce = [0u8; 12];
        random::fill(&mut nonce).map_err(|_| SealError::Random)?;
        self.seal_with_nonce(authid, provider, plaintext, nonce)
    }

    fn seal_with_nonce(
        &self,
        authid: &AuthId,
        provider: &str,
        plaintext: &[u8],
        nonce: [u8; 12],
    ) -> Result<(String, Sealed), SealError> {
        let k = &self.current;
        let key_hash = k.key_hash(authid.key_id());
        let cipher = Aes256Gcm::new_from_slice(&k.grant_key(authid, &key_hash))
            .map_err(|_| SealError::Crypto)?;
        let aad = k.aad(&key_hash, provider);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Crypto)?;
        Ok((
            key_hash,
            Sealed {
                key_version: k.version,
                nonce: B64.encode(nonce),
                ciphertext: B64.encode(ct),
            },
        ))
    }

    /// Opens a row. Fails closed ([`SealError::Open`]) on an unknown version, a
    /// key hash that is not this authid's under that version (moved row), bad
    /// encoding, a wrong authid or any tampering.
    pub fn open(
        &self,
        authid: &AuthId,
        provider: &str,
        key_hash: &str,
        sealed: &Sealed,
    ) -> Result<Vec<u8>, SealError> {
        let k = self.version(sealed.key_version).ok_or(SealError::Open)?;
        let expected = k.key_hash(authid.key_id());
        if !ct_eq(expected.as_bytes(), key_hash.as_bytes()) {
            return Err(SealError::Open);
        }
        let nonce = B64
            .decode(&sealed.nonce)
            .ok()
            .filter(|n| n.len() == 12)
            .ok_or(SealError::Open)?;
        let ct = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| SealError::Open)?;
        let cipher = Aes256Gcm::new_from_slice(&k.grant_key(authid, key_hash))
            .map_err(|_| SealError::Crypto)?;
        let aad = k.aad(key_hash, provider);
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
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

    fn authid(s: &str) -> AuthId {
        match parse_authid(s).unwrap() {
            ParsedAuthId::V1(a) => a,
            _ => unreachable!(),
        }
    }

    fn keys(cur: &str, prev: Option<&str>) -> ServerKeys {
        ServerKeys::parse(cur, prev).unwrap()
    }

    // Known answers computed independently with Python's `cryptography` package:
    // docs/kat.py regenerates them.
    #[test]
    fn known_answers_match_an_independent_implementation() {
        let k = keys(S1, None);
        assert_eq!(random::hex(&k.current.lookup_key), KAT_LOOKUP_KEY);
        assert_eq!(random::hex(&k.current.seal_salt), KAT_SEAL_SALT);
        let a = authid(AUTHID);
        let kh = k.key_hash(&a);
        assert_eq!(kh, KAT_KEY_HASH);
        assert_eq!(random::hex(&k.current.grant_key(&a, &kh)), KAT_GRANT_KEY);
        let (kh2, sealed) = k
            .seal_with_nonce(&a, "box.com", br#"{"refresh_token":"RT"}"#, [7u8; 12])
            .unwrap();
        assert_eq!(kh2, KAT_KEY_HASH);
        assert_eq!(sealed.nonce, "BwcHBwcHBwcHBwcH");
        assert_eq!(sealed.ciphertext, KAT_CIPHERTEXT);
        assert_eq!(sealed.key_version, 1);
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
        let attacker = AuthId::generate().unwrap();
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
        for (cur, prev) in [
            (format!("0:{secret}"), None),
            (format!("v1:{secret}"), None),
            (secret.clone(), None),
            ("1:short".to_string(), None),
            (format!("1:{secret}"), Some(format!("1:{secret}"))),
            (
                format!("1:{secret}"),
                Some(format!("2:{secret},2:{secret}")),
            ),
        ] {
            let err = ServerKeys::parse(&cur, prev.as_deref()).unwrap_err();
            assert!(!err.to_string().contains(&secret[..32]));
        }
        assert!(ServerKeys::parse(
            &format!("3:{secret}"),
            Some(" 2:a-long-enough-secret-0123456789ab , ")
        )
        .is_ok());
        assert!(!format!("{:?}", keys(S1, None)).contains("server-secret"));
    }

    const KAT_LOOKUP_KEY: &str = "86d741514327ed71a099207df9b1d4344ed3e2c75194be60f68952dd29388bd5";
    const KAT_SEAL_SALT: &str = "a1d247fa2ba1e3a90212da0ff86a92fc14a3432d601a7a17e23683187501cfd7";
    const KAT_KEY_HASH: &str = "d6dbe316bef340ebea1ef95dd1c7a1112051ae5017d06292312e1eee9f260cf3";
    const KAT_GRANT_KEY: &str = "a28d8c835073b3db670bffd960ac5ca88766dcce147d74136d161f28667fcc09";
    const KAT_CIPHERTEXT: &str = "wG2YeoGAbMjX9NSX/2dHido0PcvuyWtNn5VJYGm0g8Yb7A6Ejpk=";
}
