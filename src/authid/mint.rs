//! Minting: a fresh stored authid from the CSPRNG, drawn so that the
//! platform's log redaction hides its secret.

use super::v1::{AuthId, AuthIdFormat};
use crate::ids::Shard;
use crate::random::{self, RandomError};
use crate::secret::AuthSecret;

/// Whether the Workers runtime replaces `secret` with `REDACTED` when a URL
/// carrying it reaches a trace event (`wrangler tail`, Tail Workers,
/// Logpush): its heuristic redacts a run of at least 21 base64 characters
/// with at least two digits, two capitals and two lowercase letters
/// (cloudflare/workerd, src/workerd/api/util.c++ `redactUrl`, declared with
/// that rule in util.h). A random 43-character secret misses it about once
/// in 160 draws (fewer than two digits); [`AuthId::generate`] draws again.
/// The key id half (32 hex digits) is always redacted.
pub fn redacted_in_urls(secret: &str) -> bool {
    let count = |f: fn(&u8) -> bool| secret.bytes().filter(&f).count();
    secret.len() >= 21
        && count(u8::is_ascii_digit) >= 2
        && count(u8::is_ascii_uppercase) >= 2
        && count(u8::is_ascii_lowercase) >= 2
}

impl AuthId {
    /// A fresh authid from the CSPRNG for a grant stored on `shard`. Its
    /// secret half is drawn again until the platform's log redaction
    /// recognises it ([`redacted_in_urls`]): Akeeba's refresh URL carries it in
    /// its query, and trace events keep query strings.
    pub fn generate(shard: Shard) -> Result<AuthId, RandomError> {
        let mut key_id = [0u8; 16];
        random::fill(&mut key_id)?;
        let mut secret = random::token_b64url(32)?;
        // About 1 draw in 160 is redrawn; 64 failures in a row (a chance
        // of 10^-140) would keep the last draw rather than loop on.
        for _ in 0..64 {
            if redacted_in_urls(&secret) {
                break;
            }
            secret = random::token_b64url(32)?;
        }
        Ok(AuthId {
            key_id,
            key_digits: 32,
            secret: AuthSecret::new(secret),
            format: AuthIdFormat::Broker,
            shard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_redaction_rule_is_the_runtimes() {
        assert!(redacted_in_urls("ab12CDefghijklmnopqrst"));
        // Too short, one digit, one capital, one lowercase: kept by the runtime.
        assert!(!redacted_in_urls("ab12CDefghijklmnopqr"));
        assert!(!redacted_in_urls(
            "kQKtndSxyzabcdefghijkLMNOPqrs1uvw-_xyzABCDE"
        ));
        assert!(!redacted_in_urls("ab12Cdefghijklmnopqrstu"));
        assert!(!redacted_in_urls("AB12CDEFGHIJKLMNOPQRSTu"));
    }

    #[test]
    fn every_minted_authid_is_redacted_by_the_platform() {
        for _ in 0..20_000 {
            let a = AuthId::generate(Shard::FIRST).unwrap();
            assert!(redacted_in_urls(a.secret().secret()));
        }
    }

    #[test]
    fn generated_secrets_are_43_base64url_chars() {
        let a = AuthId::generate(Shard::FIRST).unwrap();
        let s = a.secret().secret();
        assert_eq!(s.len(), 43);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}
