//! PKCE (RFC 7636) with the S256 method.
//!
//! The broker derives the verifier instead of storing it (see `login`):
//! `base64url(HMAC-SHA256(cookie value, "oauth-broker/v1/pkce|" || state))`:
//! 43 characters of the unreserved set carrying 256 bits, as RFC 7636 §4.1 asks
//! (and §7.1: at least 256 bits of entropy). [`PkceVerifier::generate`] is the
//! plain random form of the same thing.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::random::{self, RandomError};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// RFC 7636 §4.1 code verifier. Not `Clone`: it is sent once, with one code.
pub struct PkceVerifier(String);

impl std::fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

impl PkceVerifier {
    /// A fresh verifier: 32 CSPRNG bytes as 43 base64url characters
    /// (RFC 7636 §4.1's recommended construction).
    pub fn generate() -> Result<PkceVerifier, RandomError> {
        Ok(PkceVerifier(random::token_b64url(32)?))
    }

    /// Derives the verifier of a login from its browser binding and state.
    pub fn derive(binding: &str, state: &str) -> PkceVerifier {
        // HMAC accepts keys of any length, so this cannot fail; stay total anyway
        // (the fallback is deterministic, so both legs of a login still agree).
        let tag = match Hmac::<Sha256>::new_from_slice(binding.as_bytes()) {
            Ok(mut mac) => {
                mac.update(b"oauth-broker/v1/pkce|");
                mac.update(state.as_bytes());
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Sha256::digest(binding.as_bytes()).to_vec(),
        };
        PkceVerifier(B64URL.encode(tag))
    }

    /// Wraps a verifier read back from storage (or an RFC vector).
    pub fn from_string(s: String) -> PkceVerifier {
        PkceVerifier(s)
    }

    /// The raw verifier, for the token request's `code_verifier` (RFC 7636 §4.5).
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// RFC 7636 §4.2: `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`.
    pub fn challenge_s256(&self) -> String {
        B64URL.encode(Sha256::digest(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_unreserved_43(s: &str) -> bool {
        s.len() == 43
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    }

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        let v = PkceVerifier::from_string("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(
            v.challenge_s256(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_43_unreserved_chars_and_differ() {
        let a = PkceVerifier::generate().unwrap();
        let b = PkceVerifier::generate().unwrap();
        assert!(is_unreserved_43(a.secret()) && is_unreserved_43(b.secret()));
        assert_ne!(a.secret(), b.secret());
        assert!(is_unreserved_43(&a.challenge_s256()));
        assert_eq!(format!("{a:?}"), "PkceVerifier([redacted])");
    }

    #[test]
    fn derived_verifiers_are_43_unreserved_chars_bound_to_binding_and_state() {
        let v = PkceVerifier::derive("cookie", "state");
        assert!(is_unreserved_43(v.secret()));
        assert_eq!(v.secret(), PkceVerifier::derive("cookie", "state").secret());
        assert_ne!(
            v.secret(),
            PkceVerifier::derive("cookie2", "state").secret()
        );
        assert_ne!(
            v.secret(),
            PkceVerifier::derive("cookie", "state2").secret()
        );
        assert!(!format!("{v:?}").contains(v.secret()));
    }
}
