//! A pass-through (v2) authid, `v2:<provider-id>:<refresh_token>`: nothing is
//! stored, the token travels in the authid. Every token a provider may return
//! has exactly one spelling, one header-safe word (`docs/reference.md`, "Authids").

use crate::secret::RefreshToken;

/// Longest input considered at all: a v2 authid still fits in one request header
/// line (8 KiB). A v2 authid longer than this cannot be made (see [`next_v2_authid`]).
pub const MAX_AUTHID_LEN: usize = 8192;

/// Whether a token byte is written as it is in a v2 authid (else `%XX`).
fn plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'%'
}

/// The v2 authid for `provider` and `refresh_token`, escaped as `docs/reference.md` says: every byte
/// outside visible ASCII (`0x21..=0x7e`) and `%` itself as `%XX` (uppercase hex).
pub fn v2_authid(provider: &str, refresh_token: &RefreshToken) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let token = refresh_token.secret();
    let mut s = String::with_capacity(4 + provider.len() + token.len());
    s.push_str("v2:");
    s.push_str(provider);
    s.push(':');
    for &b in token.as_bytes() {
        if plain(b) {
            s.push(char::from(b));
        } else {
            s.push('%');
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    s
}

/// The v2 authid to hand back after a provider answered with `refresh_token`,
/// or `None` when it would be longer than [`MAX_AUTHID_LEN`] and so could never
/// be presented again.
pub fn next_v2_authid(provider: &str, refresh_token: &RefreshToken) -> Option<String> {
    Some(v2_authid(provider, refresh_token)).filter(|a| a.len() <= MAX_AUTHID_LEN)
}

/// Reverses the escaping of [`v2_authid`]: only canonical escapes (uppercase hex
/// of a byte that must be escaped) and a UTF-8 result, so each token has one
/// spelling and a parsed authid prints back exactly as it was given.
pub(super) fn unescape_token(s: &str) -> Option<String> {
    let upper_hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = upper_hex(*bytes.get(i + 1)?)?;
            let lo = upper_hex(*bytes.get(i + 2)?)?;
            let decoded = (hi << 4) | lo;
            if plain(decoded) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else if plain(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::super::parse::test_support::token_of;
    use super::*;
    use crate::authid::{parse_authid, AuthIdError, ParsedAuthId};

    /// A deterministic stream of characters from every class a JSON string can
    /// hold (xorshift; no randomness needed to cover them).
    fn tokens() -> Vec<String> {
        let alphabet: Vec<char> = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', 'ß', '日', '本', '\u{2028}', '🔑', '\u{fffd}'])
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out: Vec<String> = vec![
            "a b".into(),
            " leading and trailing ".into(),
            "é".into(),
            "%".into(),
            "%41".into(),
            "%%".into(),
            "\t\r\n".into(),
            "\0".into(),
            ":".into(),
            "v2:demo:nested".into(),
            (0u8..=0x7f).map(char::from).collect(),
            "x".repeat(2000),
        ];
        for _ in 0..500 {
            let len = 1 + (next() % 300) as usize;
            out.push(
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn every_token_a_provider_can_return_round_trips_through_its_v2_authid() {
        for t in tokens() {
            let rt = RefreshToken::new(t.clone());
            let authid = v2_authid("box.com", &rt);
            assert!(
                authid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "one header-safe word: {authid:?}"
            );
            match parse_authid(&authid) {
                Ok(ParsedAuthId::V2 {
                    provider,
                    refresh_token,
                }) => {
                    assert_eq!(provider, "box.com");
                    assert_eq!(refresh_token.secret(), t, "{authid:?}");
                    assert_eq!(v2_authid(&provider, &refresh_token), authid);
                }
                other => panic!("{t:?} -> {authid:?} -> {other:?}"),
            }
            assert_eq!(next_v2_authid("box.com", &rt), Some(authid));
        }
    }

    #[test]
    fn a_plain_token_keeps_the_spelling_it_always_had() {
        let t = "1//0gAbc-_.~*!$+=/M.C5_BAY.0.U.-Cq!Yz*";
        let rt = RefreshToken::new(t.to_string());
        assert_eq!(v2_authid("demo", &rt), format!("v2:demo:{t}"));
        assert_eq!(
            v2_authid("demo", &RefreshToken::new("a é%".into())),
            "v2:demo:a%20%C3%A9%25"
        );
    }

    #[test]
    fn each_token_has_one_spelling_so_odd_escapes_are_refused() {
        let bad = |s: &str| {
            assert_eq!(
                parse_authid(s).map(|_| ()),
                Err(AuthIdError::Malformed),
                "{s:?}"
            )
        };
        bad("v2:demo:%41"); // escapes a character that stands for itself
        bad("v2:demo:%c3%a9"); // lowercase hex
        bad("v2:demo:%FF"); // not UTF-8
        bad("v2:demo:%C3"); // a UTF-8 sequence cut short
        bad("v2:demo:%2");
        bad("v2:demo:%");
        bad("v2:demo:%G0");
        bad("v2:demo:a%20 b"); // an escape does not make a raw space valid
        assert_eq!(token_of("v2:demo:%C3%A9"), "é");
        assert_eq!(token_of("v2:demo:%00"), "\0");
    }

    #[test]
    fn a_rotated_token_too_long_to_present_again_gets_no_authid() {
        let plain = |n: usize| RefreshToken::new("t".repeat(n));
        let head = "v2:demo:".len();
        assert!(next_v2_authid("demo", &plain(MAX_AUTHID_LEN - head)).is_some());
        assert_eq!(
            next_v2_authid("demo", &plain(MAX_AUTHID_LEN - head + 1)),
            None
        );
        // Escaping counts: 2,731 spaces are 8,193 characters written.
        let spaces = RefreshToken::new(" ".repeat((MAX_AUTHID_LEN - head) / 3 + 1));
        assert_eq!(next_v2_authid("demo", &spaces), None);
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
}
