//! The old Duplicati UI's hand-off: it opens `/?type=<id>&token=<t>` and polls
//! `/fetch?token=<t>` (JSON or JSONP) until the login that carried `t` has made
//! an authid. The pending authid is stored only sealed under a key derived from
//! `t` and the server secret, is handed out once, and expires after
//! [`FETCH_TTL_SECS`].

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::random;

/// How long a registered fetch token lives.
pub const FETCH_TTL_SECS: i64 = 900;

/// Name of the cookie that carries the fetch token from `/login` to the callback.
pub const COOKIE_NAME: &str = "__Host-broker-fetch";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A fetch token as the UI sends it: 1–128 chars of `[A-Za-z0-9._~-]`.
pub fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// Storage key of a fetch token.
pub fn token_hash(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"oauth-broker/v1/fetch-token|");
    h.update(token.as_bytes());
    random::hex(&h.finalize())
}

/// Key for the pending authid: HKDF-SHA256 over the token, salted with the
/// server secret, so neither a database dump nor a leaked token alone opens it.
fn key(token: &str, server_secret: &str) -> [u8; 32] {
    let mut salt = Sha256::new();
    salt.update(b"oauth-broker/v1/fetch-salt|");
    salt.update(server_secret.as_bytes());
    let hk = Hkdf::<Sha256>::new(Some(&salt.finalize()), token.as_bytes());
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = hk.expand(b"oauth-broker/v1/fetch-key", &mut out);
    out
}

/// Seals `authid` for the holder of `token`: (nonce, ciphertext), base64.
pub fn seal_authid(token: &str, server_secret: &str, authid: &str) -> Option<(String, String)> {
    let cipher = Aes256Gcm::new_from_slice(&key(token, server_secret)).ok()?;
    let mut nonce = [0u8; 12];
    random::fill(&mut nonce).ok()?;
    let aad = token_hash(token);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: authid.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .ok()?;
    Some((B64.encode(nonce), B64.encode(ct)))
}

/// Opens a pending authid; `None` for anything tampered or wrong.
pub fn open_authid(token: &str, server_secret: &str, nonce: &str, ct: &str) -> Option<String> {
    let cipher = Aes256Gcm::new_from_slice(&key(token, server_secret)).ok()?;
    let nonce = B64.decode(nonce).ok().filter(|n| n.len() == 12)?;
    let ct = B64.decode(ct).ok()?;
    let aad = token_hash(token);
    let plain = cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ct,
                aad: aad.as_bytes(),
            },
        )
        .ok()?;
    String::from_utf8(plain).ok()
}

/// What `/fetch` answers (always HTTP 200, as the old UI expects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAnswer {
    Authid(String),
    NotReady,
    NoSuchEntry,
    MissingToken,
}

impl FetchAnswer {
    pub fn json(&self) -> Value {
        match self {
            FetchAnswer::Authid(a) => json!({ "authid": a }),
            FetchAnswer::NotReady => json!({ "wait": "Not ready" }),
            FetchAnswer::NoSuchEntry => json!({ "error": "No such entry" }),
            FetchAnswer::MissingToken => json!({ "error": "Missing token" }),
        }
    }
}

/// A JSONP callback name: dot-separated JS identifiers (`JSON_CALLBACK`,
/// `angular.callbacks._0`), at most 128 chars. Nothing else can reach script text.
pub fn valid_callback(cb: &str) -> bool {
    cb.len() <= 128
        && !cb.is_empty()
        && cb.split('.').all(|part| {
            let mut bytes = part.bytes();
            bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        })
}

/// The JSONP body. The leading comment keeps the first bytes fixed (no
/// content-sniffing games with a callback name); the callback is validated.
pub fn jsonp(callback: &str, body: &Value) -> Option<String> {
    valid_callback(callback).then(|| format!("/**/ {callback}({body});"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_validated() {
        assert!(valid_token("abc-123_x.y~z"));
        assert!(!valid_token(""));
        assert!(!valid_token("a b"));
        assert!(!valid_token("a<b"));
        assert!(!valid_token(&"a".repeat(129)));
    }

    #[test]
    fn pending_authid_opens_only_with_token_and_server_secret() {
        let (n, c) = seal_authid("tok", "server", "0123:secret").unwrap();
        assert_eq!(
            open_authid("tok", "server", &n, &c).as_deref(),
            Some("0123:secret")
        );
        assert!(open_authid("tok2", "server", &n, &c).is_none());
        assert!(open_authid("tok", "other", &n, &c).is_none());
        let mut bad = c.clone();
        bad.replace_range(0..1, if c.starts_with('A') { "B" } else { "A" });
        assert!(open_authid("tok", "server", &n, &bad).is_none());
        assert!(!c.contains("secret"));
        let (n2, c2) = seal_authid("tok", "server", "0123:secret").unwrap();
        assert!(n2 != n && c2 != c, "fresh nonce per seal");
    }

    #[test]
    fn answers_match_duplicatis_expectations() {
        assert_eq!(
            FetchAnswer::NotReady.json().to_string(),
            r#"{"wait":"Not ready"}"#
        );
        assert_eq!(
            FetchAnswer::NoSuchEntry.json().to_string(),
            r#"{"error":"No such entry"}"#
        );
        assert_eq!(
            FetchAnswer::MissingToken.json().to_string(),
            r#"{"error":"Missing token"}"#
        );
        assert_eq!(
            FetchAnswer::Authid("a:b".into()).json().to_string(),
            r#"{"authid":"a:b"}"#
        );
    }

    #[test]
    fn jsonp_accepts_identifiers_only() {
        let body = json!({"wait": "Not ready"});
        assert_eq!(
            jsonp("angular.callbacks._0", &body).unwrap(),
            r#"/**/ angular.callbacks._0({"wait":"Not ready"});"#
        );
        assert!(jsonp("JSON_CALLBACK", &body).is_some());
        for bad in [
            "",
            "alert(1)//",
            "a;b",
            "a..b",
            "1abc",
            "a-b",
            "<script>",
            "a b",
            "x\u{2028}",
        ] {
            assert!(jsonp(bad, &body).is_none(), "{bad:?}");
        }
        assert!(jsonp(&"a".repeat(129), &body).is_none());
    }

    #[test]
    fn token_hash_is_domain_separated() {
        assert_eq!(token_hash("t").len(), 64);
        assert_ne!(token_hash("t"), crate::login::sha256_hex("t"));
    }
}
