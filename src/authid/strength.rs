//! Whether a secret looks random: a pass-through refresh token worth a call
//! to the provider, and an imported authid's secret that could have come
//! from a generator. Both only catch the obvious; neither can see through a
//! clever choice.

use super::v1::service_class;
use super::v1::{AuthId, AuthIdFormat};
use crate::error::BrokerError;
use crate::secret::RefreshToken;

/// An estimate of the bits of randomness in `s`: its length times the Shannon
/// entropy of its character frequencies. It cannot tell a random string from a
/// clever pattern, only catch the obvious: repeats, few symbols, short strings.
fn estimated_bits(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for &b in s.as_bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2() * n
        })
        .sum()
}

fn distinct_bytes(s: &str) -> usize {
    let mut seen = [false; 256];
    for &b in s.as_bytes() {
        seen[usize::from(b)] = true;
    }
    seen.iter().filter(|&&x| x).count()
}

/// Whether a pass-through refresh token is worth a call to the provider. Real
/// refresh tokens carry at least 128 random bits (Google's ~100 characters, Box's
/// and Dropbox's 64, Microsoft's and Keycloak's JWT-like ones far more); this
/// floor is set well below that, so it refuses only obvious garbage (`x`,
/// `sometoken`, one or two characters repeated) and never a token a provider
/// issued: at least 16 characters, 8 different ones, and 64 estimated bits.
pub fn plausible_refresh_token(token: &RefreshToken) -> bool {
    let t = token.secret();
    t.len() >= 16 && distinct_bytes(t) >= 8 && estimated_bits(t) >= 64.0
}

/// A v1 authid whose secret a caller chose (`POST /import`) but which does not
/// look like the output of a CSPRNG.
pub const WEAK_AUTHID: BrokerError = BrokerError::BadRequest {
    code: "weak_authid",
    what: "the authid in X-AuthID does not look randomly generated; \
           leave X-AuthID out and the broker mints one",
};

impl AuthId {
    /// Whether the secret half could have come from a CSPRNG, as ours (43
    /// base64url characters, 256 bits) and the Duplicati services' (32 random
    /// characters) do: at least 112 estimated bits, at most half of its
    /// neighbouring characters equal or adjacent (`aa`, `ab`, `21`), and both
    /// upper- and lowercase letters. A random 32-character secret estimates at
    /// 125 bits or more, has about one neighbour pair in twenty adjacent, lacks
    /// a letter case with odds of about 1 in 10^7; what a person picks (repeats,
    /// lowercase words, runs such as `abcdef…` or `0123…`) fails. It cannot see
    /// through a clever choice: `POST /import` without `X-AuthID` mints one.
    /// oauth-handler's 21-character secrets are held to their generator's own
    /// rule instead ([`handler_secret_looks_generated`]).
    pub fn looks_minted(&self) -> bool {
        let s = self.secret.secret();
        if self.format == AuthIdFormat::OauthHandler {
            return handler_secret_looks_generated(s);
        }
        let pairs = s.len().saturating_sub(1).max(1);
        let adjacent = s
            .as_bytes()
            .windows(2)
            .filter(|w| w[0].abs_diff(w[1]) <= 1)
            .count();
        let cases =
            s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase());
        estimated_bits(s) >= 112.0 && adjacent * 2 <= pairs && cases
    }
}

/// Whether a 21-character oauth-handler secret could have come from its
/// generator (password_generator.py): never two characters of one class in a
/// row (the generator's own rule), at least three of the four classes, and at
/// least 64 estimated bits. A generated one has about 80; it fails these with
/// odds below one in a thousand (unit-tested against the generator's
/// algorithm), while repeats, words and runs fail at once.
fn handler_secret_looks_generated(s: &str) -> bool {
    let classes: Vec<u8> = s.bytes().filter_map(service_class).collect();
    let alternating = classes.windows(2).all(|w| w[0] != w[1]);
    let mut seen = [false; 4];
    for &c in &classes {
        seen[usize::from(c)] = true;
    }
    let kinds = seen.iter().filter(|&&x| x).count();
    classes.len() == s.len() && alternating && kinds >= 3 && estimated_bits(s) >= 64.0
}

#[cfg(test)]
mod tests {
    use super::super::parse::test_support::{service_secret, v1};
    use super::*;
    use crate::authid::{parse_authid, ParsedAuthId};
    use crate::ids::Shard;
    use crate::random;

    #[test]
    fn obvious_garbage_is_not_a_plausible_refresh_token() {
        let p = |s: &str| plausible_refresh_token(&RefreshToken::new(s.to_string()));
        for garbage in [
            "x",
            "sometoken",
            "abcdefghijklmno",
            &"a".repeat(200),
            &"ab".repeat(40),
            &"0".repeat(28),
            &"abcd".repeat(16),
        ] {
            assert!(!p(garbage), "{garbage:?}");
        }
        // Shapes real providers issue.
        for real in [
            "mockRT_0f3a9c2d81e47b6650c1d2e3f4a5b6c7",
            "1//0gLkzQ3u9-HfXCgYIARAAGBASNwF-L9IrmG1sJ2kq7c4aV8yZbWx0nPdE5tRfUoVhQiKjMl6",
            "M.C520_BAY.0.U.-Cq!Yz*8mN2$kL4pQ7rT1vW3xZ5aB9cD0eF",
            "sl.u.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd",
            "2mQd8VYrX1KzTLfNp0wHsB7cJ6gE4aRu",
        ] {
            assert!(p(real), "{real:?}");
        }
        // Random tokens of 128 bits, hex or base64url, always pass.
        for _ in 0..1000 {
            let b64 = random::token_b64url(16).unwrap();
            let mut raw = [0u8; 16];
            random::fill(&mut raw).unwrap();
            assert!(p(&b64) && p(&random::hex(&raw)), "{b64}");
        }
    }

    #[test]
    fn import_takes_only_secrets_that_look_minted() {
        let k = "0123456789abcdef0123456789abcdef";
        for _ in 0..1000 {
            assert!(AuthId::generate(Shard::FIRST).unwrap().looks_minted());
            // The Duplicati services' 32-character secrets.
            let legacy = format!("{k}:{}", random::token_b64url(24).unwrap());
            assert!(v1(&legacy).looks_minted(), "{legacy}");
        }
        for weak in [
            "k".repeat(43),
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ".to_string(),
            "password-password-password-passw".to_string(),
            "0123456789".repeat(4) + "012",
            "correct-horse-battery-staple-correct-horses".to_string(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab".to_string(),
        ] {
            assert!(!v1(&format!("{k}:{weak}")).looks_minted(), "{weak}");
        }
        assert_eq!(WEAK_AUTHID.status(), 400);
        assert_eq!(WEAK_AUTHID.code(), "weak_authid");
    }

    #[test]
    fn secrets_from_the_services_generators_look_minted_and_chosen_ones_do_not() {
        let mut x = 0x9e37_79b9_7f4a_7c15;
        let (mut handler_fails, mut server_fails) = (0, 0);
        for _ in 0..10_000 {
            let h = format!("{}:{}", "1".repeat(30), service_secret(21, &mut x));
            handler_fails += usize::from(!v1(&h).looks_minted());
            let s = format!("{}:{}", "2".repeat(32), service_secret(32, &mut x));
            server_fails += usize::from(!v1(&s).looks_minted());
        }
        assert!(handler_fails <= 10, "{handler_fails} of 10000");
        assert!(server_fails <= 10, "{server_fails} of 10000");
        for weak in [
            "aaaaaaaaaaaaaaaaaaaaa",
            "a1a1a1a1a1a1a1a1a1a1a",
            "a1A!a1A!a1A!a1A!a1A!a",
            "password1password1pa",
            "Password1!Password1!P",
        ] {
            let authid = format!("{}:{weak}", "1".repeat(30));
            if let Ok(ParsedAuthId::V1(a)) = parse_authid(&authid) {
                assert!(!a.looks_minted(), "{weak}");
            }
        }
    }
}
