//! Unkeyed SHA-256 digests in lowercase hex: the storage form of single-use
//! random values (login states, codes, tokens). A value that is 256 random
//! bits needs no key; a domain label keeps two kinds of value from sharing a
//! row key. Keyed hashes (a grant's `key_hash`) live in `seal`.

use sha2::{Digest, Sha256};

use crate::random;

/// Lowercase hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    random::hex(&Sha256::digest(s.as_bytes()))
}

/// Lowercase hex SHA-256 of `domain` followed by `value`: the same bytes as
/// `sha256_hex(&format!("{domain}{value}"))`, without the copy.
pub fn domain_hex(domain: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update(value.as_bytes());
    random::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_the_lowercase_hex_of_the_standard_digest() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_domain_digest_is_the_digest_of_domain_and_value_together() {
        assert_eq!(domain_hex("d|", "v"), sha256_hex("d|v"));
        assert_ne!(domain_hex("d|", "v"), sha256_hex("v"));
    }
}
