//! Authids: what a user pastes into the backup client.
//!
//! - **v1 (stored)**: `<keyid>:<secret>`. keyid = 16 CSPRNG bytes as 32 lowercase
//!   hex chars (locates the row, through a keyed hash); secret = 32 CSPRNG bytes as
//!   43 base64url chars (256 bits; the key material for the grant, never stored).
//!   Parsing accepts secrets of 32..=128 chars of `[A-Za-z0-9._-]`.
//! - **v2 (pass-through)**: `v2:<provider-id>:<refresh_token>`; nothing is stored.
//!
//! Both contain `:` because Duplicati treats an authid without one as a raw
//! access token. Parse errors never contain the input.

use crate::random::{self, RandomError};
use crate::secret::{AuthSecret, RefreshToken};

/// Longest input considered at all (a v2 authid with a 4096-char token).
pub const MAX_AUTHID_LEN: usize = 4200;
const SECRET_MIN: usize = 32;
const SECRET_MAX: usize = 128;
const REFRESH_TOKEN_MAX: usize = 4096;

/// A stored (v1) authid. Not `Clone`, `Debug` redacted.
pub struct AuthId {
    key_id: [u8; 16],
    secret: AuthSecret,
}

impl std::fmt::Debug for AuthId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthId([redacted])")
    }
}

impl AuthId {
    /// A fresh authid from the CSPRNG.
    pub fn generate() -> Result<AuthId, RandomError> {
        let mut key_id = [0u8; 16];
        random::fill(&mut key_id)?;
        Ok(AuthId {
            key_id,
            secret: AuthSecret::new(random::token_b64url(32)?),
        })
    }

    pub fn key_id(&self) -> &[u8; 16] {
        &self.key_id
    }

    pub fn secret(&self) -> &AuthSecret {
        &self.secret
    }

    /// `"<32 hex>:<secret>"`: the one place an authid becomes a string, to be
    /// shown to its user once.
    pub fn expose(&self) -> String {
        format!("{}:{}", random::hex(&self.key_id), self.secret.secret())
    }
}

/// A parsed authid.
pub enum ParsedAuthId {
    V1(AuthId),
    V2 {
        provider: String,
        refresh_token: RefreshToken,
    },
}

impl std::fmt::Debug for ParsedAuthId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParsedAuthId::V1(_) => f.write_str("V1([redacted])"),
            ParsedAuthId::V2 { provider, .. } => write!(f, "V2({provider}, [redacted])"),
        }
    }
}

/// Why an authid was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthIdError {
    Empty,
    TooLong,
    Malformed,
}

impl AuthIdError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthIdError::Empty => "missing_authid",
            AuthIdError::TooLong | AuthIdError::Malformed => "malformed_authid",
        }
    }
}

impl std::fmt::Display for AuthIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthIdError::Empty => "no authid",
            AuthIdError::TooLong => "authid too long",
            AuthIdError::Malformed => "authid malformed",
        })
    }
}

impl From<AuthIdError> for crate::error::BrokerError {
    fn from(e: AuthIdError) -> Self {
        match e {
            AuthIdError::Empty => crate::error::BrokerError::MissingAuthId,
            AuthIdError::TooLong | AuthIdError::Malformed => {
                crate::error::BrokerError::MalformedAuthId
            }
        }
    }
}

/// The v2 authid for `provider` and `refresh_token`.
pub fn v2_authid(provider: &str, refresh_token: &RefreshToken) -> String {
    format!("v2:{provider}:{}", refresh_token.secret())
}

/// The keyid: exactly 32 lowercase hex digits (uppercase is refused, so each
/// keyid has one spelling).
fn hex_key_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Parses an authid exactly as a client sent it: nothing is trimmed (Duplicati
/// sends it verbatim), so surrounding whitespace is malformed. `v2:` selects a
/// pass-through authid; anything else must be a v1 authid.
pub fn parse_authid(s: &str) -> Result<ParsedAuthId, AuthIdError> {
    if s.is_empty() {
        return Err(AuthIdError::Empty);
    }
    if s.len() > MAX_AUTHID_LEN {
        return Err(AuthIdError::TooLong);
    }
    if let Some(rest) = s.strip_prefix("v2:") {
        let (provider, token) = rest.split_once(':').ok_or(AuthIdError::Malformed)?;
        let provider_ok = (1..=64).contains(&provider.len())
            && provider
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        let token_ok = (1..=REFRESH_TOKEN_MAX).contains(&token.len())
            && token.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !(provider_ok && token_ok) {
            return Err(AuthIdError::Malformed);
        }
        return Ok(ParsedAuthId::V2 {
            provider: provider.to_string(),
            refresh_token: RefreshToken::new(token.to_string()),
        });
    }
    let (key_id, secret) = s.split_once(':').ok_or(AuthIdError::Malformed)?;
    let key_id = hex_key_id(key_id).ok_or(AuthIdError::Malformed)?;
    let secret_ok = (SECRET_MIN..=SECRET_MAX).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !secret_ok {
        return Err(AuthIdError::Malformed);
    }
    Ok(ParsedAuthId::V1(AuthId {
        key_id,
        secret: AuthSecret::new(secret.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(s: &str) -> AuthId {
        match parse_authid(s) {
            Ok(ParsedAuthId::V1(a)) => a,
            other => panic!("not v1: {other:?}"),
        }
    }

    #[test]
    fn generated_authids_round_trip_and_differ() {
        let a = AuthId::generate().unwrap();
        let b = AuthId::generate().unwrap();
        let shown = a.expose();
        assert_eq!(shown.len(), 32 + 1 + 43);
        assert_ne!(shown, b.expose());
        let parsed = v1(&shown);
        assert_eq!(parsed.key_id(), a.key_id());
        assert_eq!(parsed.secret(), a.secret());
        assert_eq!(parsed.expose(), shown);
    }

    #[test]
    fn secret_length_bounds() {
        let k = "0123456789abcdef0123456789abcdef";
        for (n, ok) in [(31, false), (32, true), (128, true), (129, false)] {
            let s = format!("{k}:{}", "a".repeat(n));
            assert_eq!(parse_authid(&s).is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn malformed_authids_are_refused_without_echo() {
        let k = "0123456789abcdef0123456789abcdef";
        let secret = "s".repeat(40);
        let cases = [
            ("", AuthIdError::Empty),
            ("nocolon", AuthIdError::Malformed),
            (
                &format!("{}:{secret}", k.to_uppercase()) as &str,
                AuthIdError::Malformed,
            ),
            (&format!("{}:{secret}", &k[1..]), AuthIdError::Malformed),
            (&format!("{k}:{secret} "), AuthIdError::Malformed),
            (&format!(" {k}:{secret}"), AuthIdError::Malformed),
            (&format!("{k}:{secret}\0"), AuthIdError::Malformed),
            (&format!("{k}:{}é", "s".repeat(39)), AuthIdError::Malformed),
            (&format!("{k}:{}", "x".repeat(5000)), AuthIdError::TooLong),
            ("v2:demo", AuthIdError::Malformed),
            ("v2::rt", AuthIdError::Malformed),
            ("v2:Demo:rt", AuthIdError::Malformed),
            ("v2:demo:", AuthIdError::Malformed),
            ("v2:demo:has space", AuthIdError::Malformed),
        ];
        for (input, want) in cases {
            let err = parse_authid(input).unwrap_err();
            assert_eq!(err, want, "{input:?}");
            if input.len() > 3 {
                assert!(!err.to_string().contains(input));
            }
        }
        assert_eq!(AuthIdError::Empty.code(), "missing_authid");
        assert_eq!(AuthIdError::TooLong.code(), "malformed_authid");
    }

    #[test]
    fn length_bounds_of_v2_parts_and_of_the_whole() {
        let p = |s: &str| parse_authid(s).map(|_| ());
        let token = |n: usize| format!("v2:demo:{}", "t".repeat(n));
        assert_eq!(p(&token(1)), Ok(()));
        assert_eq!(p(&token(4096)), Ok(()));
        assert_eq!(p(&token(4097)), Err(AuthIdError::Malformed));
        assert_eq!(p(&format!("v2:{}:rt", "p".repeat(64))), Ok(()));
        assert_eq!(
            p(&format!("v2:{}:rt", "p".repeat(65))),
            Err(AuthIdError::Malformed)
        );
        let k = "0123456789abcdef0123456789abcdef";
        let at = |n: usize| format!("{k}:{}", "s".repeat(n - 33));
        assert_eq!(p(&at(4200)), Err(AuthIdError::Malformed)); // secret > 128
        assert_eq!(p(&at(4201)), Err(AuthIdError::TooLong));
    }

    #[test]
    fn refused_characters() {
        let k = "0123456789abcdef0123456789abcdef";
        let s = "s".repeat(39);
        for bad in ["+", "/", ":", "=", "~", "\t", "\u{7f}"] {
            assert_eq!(
                parse_authid(&format!("{k}:{s}{bad}")).map(|_| ()),
                Err(AuthIdError::Malformed),
                "v1 {bad:?}"
            );
        }
        for bad in ["\t", "\u{7f}", "\0", "é", "\n"] {
            assert_eq!(
                parse_authid(&format!("v2:demo:rt{bad}")).map(|_| ()),
                Err(AuthIdError::Malformed),
                "v2 {bad:?}"
            );
        }
        for bad in ["Demo", "de mo", "de/mo"] {
            assert_eq!(
                parse_authid(&format!("v2:{bad}:rt")).map(|_| ()),
                Err(AuthIdError::Malformed),
                "provider {bad:?}"
            );
        }
        // Every visible ASCII character is allowed in a pass-through token.
        let visible: String = (0x21u8..=0x7e).map(char::from).collect();
        assert!(parse_authid(&format!("v2:a.b_c-9:{visible}")).is_ok());
    }

    #[test]
    fn generated_secrets_are_43_base64url_chars() {
        let a = AuthId::generate().unwrap();
        let s = a.secret().secret();
        assert_eq!(s.len(), 43);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn v2_keeps_colons_inside_the_refresh_token() {
        match parse_authid("v2:box.com:a:b:c//d").unwrap() {
            ParsedAuthId::V2 {
                provider,
                refresh_token,
            } => {
                assert_eq!(provider, "box.com");
                assert_eq!(refresh_token.secret(), "a:b:c//d");
                assert_eq!(v2_authid(&provider, &refresh_token), "v2:box.com:a:b:c//d");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let a = AuthId::generate().unwrap();
        let shown = a.expose();
        let (k, s) = shown.split_once(':').unwrap();
        let dbg = format!("{a:?} {:?}", parse_authid(&shown).unwrap());
        assert!(!dbg.contains(k) && !dbg.contains(s));
        let v2 = format!("{:?}", parse_authid("v2:demo:TOPSECRET").unwrap());
        assert!(!v2.contains("TOPSECRET"));
    }
}
