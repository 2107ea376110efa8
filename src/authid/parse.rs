//! Parsing an authid as a client sent it: a pass-through (v2) one, or a
//! stored (v1) one, tagged with its shard or not.

use super::error::AuthIdError;
use super::shard_tag;
use super::v1::{self, AuthId};
use super::v2::{self, MAX_AUTHID_LEN};
use crate::secret::RefreshToken;

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

/// Parses an authid exactly as a client sent it: nothing is trimmed (Duplicati
/// sends it verbatim), so surrounding whitespace is malformed. `v2:` selects a
/// pass-through authid; anything else must be a v1 authid, tagged or not.
pub fn parse_authid(s: &str) -> Result<ParsedAuthId, AuthIdError> {
    if s.is_empty() {
        return Err(AuthIdError::Empty);
    }
    if s.len() > MAX_AUTHID_LEN {
        return Err(AuthIdError::TooLong);
    }
    if let Some(rest) = s.strip_prefix("v2:") {
        return parse_v2(rest);
    }
    let (shard, s) = shard_tag::split(s)?;
    v1::parse(s, shard).map(ParsedAuthId::V1)
}

/// Parses what follows `v2:`: `<provider-id>:<escaped token>`.
fn parse_v2(rest: &str) -> Result<ParsedAuthId, AuthIdError> {
    let (provider, token) = rest.split_once(':').ok_or(AuthIdError::Malformed)?;
    let provider_ok = (1..=64).contains(&provider.len())
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let token = v2::unescape_token(token)
        .filter(|t| !t.is_empty())
        .ok_or(AuthIdError::Malformed)?;
    if !provider_ok {
        return Err(AuthIdError::Malformed);
    }
    Ok(ParsedAuthId::V2 {
        provider: provider.to_string(),
        refresh_token: RefreshToken::new(token),
    })
}

/// What the tests of every part of an authid share.
#[cfg(test)]
pub(super) mod test_support {
    use super::{parse_authid, AuthId, ParsedAuthId};

    pub(in crate::authid) fn v1(s: &str) -> AuthId {
        match parse_authid(s) {
            Ok(ParsedAuthId::V1(a)) => a,
            other => panic!("not v1: {other:?}"),
        }
    }

    pub(in crate::authid) fn token_of(authid: &str) -> String {
        match parse_authid(authid) {
            Ok(ParsedAuthId::V2 { refresh_token, .. }) => refresh_token.secret().to_string(),
            other => panic!("not v2: {other:?}"),
        }
    }

    /// The Duplicati services' password generators (oauth-handler
    /// password_generator.py `generate_pass`, oauth-server PasswordGenerator.cs
    /// `Generate`): a random class, never the previous one, then a random
    /// character of it. Driven by a deterministic xorshift here.
    pub(in crate::authid) fn service_secret(len: usize, x: &mut u64) -> String {
        const CLASSES: [&str; 4] = [
            "abcdefghijklmnopqrstuvwxyz",
            "0123456789",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "!-_.",
        ];
        let mut next = |n: usize| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x % n as u64) as usize
        };
        let mut out = String::new();
        let mut prev = usize::MAX;
        while out.len() < len {
            let c = next(4);
            if c == prev {
                continue;
            }
            prev = c;
            let set = CLASSES[c].as_bytes();
            out.push(char::from(set[next(set.len())]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::token_of;
    use super::*;
    use crate::ids::Shard;

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
            (&format!("{k}:{}", "x".repeat(9000)), AuthIdError::TooLong),
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
        assert_eq!(p(&token(MAX_AUTHID_LEN - 8)), Ok(()));
        assert_eq!(p(&token(MAX_AUTHID_LEN - 7)), Err(AuthIdError::TooLong));
        assert_eq!(p(&format!("v2:{}:rt", "p".repeat(64))), Ok(()));
        assert_eq!(
            p(&format!("v2:{}:rt", "p".repeat(65))),
            Err(AuthIdError::Malformed)
        );
        let k = "0123456789abcdef0123456789abcdef";
        let at = |n: usize| format!("{k}:{}", "s".repeat(n - 33));
        assert_eq!(p(&at(MAX_AUTHID_LEN)), Err(AuthIdError::Malformed)); // secret > 128
        assert_eq!(p(&at(MAX_AUTHID_LEN + 1)), Err(AuthIdError::TooLong));
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
        // Every visible ASCII character but `%` stands for itself in a
        // pass-through token; `%` starts an escape.
        let visible: String = (0x21u8..=0x7e)
            .filter(|&b| b != b'%')
            .map(char::from)
            .collect();
        assert!(parse_authid(&format!("v2:a.b_c-9:{visible}")).is_ok());
        assert_eq!(token_of("v2:demo:100%25"), "100%");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let a = AuthId::generate(Shard::FIRST).unwrap();
        let shown = a.expose();
        let (k, s) = shown.split_once(':').unwrap();
        let dbg = format!("{a:?} {:?}", parse_authid(&shown).unwrap());
        assert!(!dbg.contains(k) && !dbg.contains(s));
        let v2 = format!("{:?}", parse_authid("v2:demo:TOPSECRET").unwrap());
        assert!(!v2.contains("TOPSECRET"));
    }
}
