//! The old Duplicati UI's hand-off: it opens `/?type=<id>&token=<t>` and polls
//! `/fetch?token=<t>` (JSON or JSONP) until the login that carried `t` has made
//! an authid. This module holds the hand-off's wire side: the token's shape and
//! storage key, the cookie that carries it to the callback, `/fetch`'s answers
//! and the JSONP wrapper. The pending authid itself is sealed by
//! [`crate::seal::ServerKeys::seal_handoff`] (all AEAD lives in `seal.rs`), is
//! handed out once, and expires after [`FETCH_TTL_SECS`].

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::BrokerError;
use crate::random;
use crate::request::{single, Params};

/// How long a registered fetch token lives.
pub const FETCH_TTL_SECS: i64 = 900;

/// Name of the cookie that carries the fetch token from `/login` to the callback.
pub const COOKIE_NAME: &str = "__Host-broker-fetch";

/// A fetch token as the UI sends it: 1–128 chars of `[A-Za-z0-9._~-]`.
pub fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// The `token` query parameter, validated (`None` when absent or empty).
pub fn token_param(query: &Params) -> Result<Option<&str>, BrokerError> {
    match single(query, "token")?.filter(|t| !t.is_empty()) {
        Some(t) if valid_token(t) => Ok(Some(t)),
        Some(_) => Err(BrokerError::BadRequest {
            code: "bad_token",
            what: "token must be 1-128 chars of A-Z a-z 0-9 . _ ~ -",
        }),
        None => Ok(None),
    }
}

/// Storage key of a fetch token (`fetch_tokens.token_hash`), also bound into
/// the hand-off's AAD by [`crate::seal::ServerKeys::seal_handoff`]. Unkeyed
/// (unlike a grant's `key_hash`) so the row key stays the same across a
/// server-secret rotation; it opens nothing, as the hand-off key also needs `S_v`.
pub fn token_hash(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"oauth-broker/v1/fetch-token|");
    h.update(token.as_bytes());
    random::hex(&h.finalize())
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
    fn the_token_parameter_is_optional_but_never_malformed() {
        use crate::request::parse_params;
        assert_eq!(token_param(&parse_params("token=a.b")), Ok(Some("a.b")));
        assert_eq!(token_param(&parse_params("token=")), Ok(None));
        assert_eq!(token_param(&parse_params("x=1")), Ok(None));
        assert_eq!(
            token_param(&parse_params("token=%3Cx")).unwrap_err().code(),
            "bad_token"
        );
        assert_eq!(
            token_param(&parse_params("token=a&token=b"))
                .unwrap_err()
                .code(),
            "duplicate_parameter"
        );
    }

    #[test]
    fn tokens_are_validated() {
        assert!(valid_token("abc-123_x.y~z"));
        assert!(!valid_token(""));
        assert!(!valid_token("a b"));
        assert!(!valid_token("a<b"));
        assert!(!valid_token(&"a".repeat(129)));
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
