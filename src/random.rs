//! The CSPRNG (`getrandom`: the OS natively, `crypto.getRandomValues` in workerd).

use base64::Engine as _;

/// The platform's random number generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomError;

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("random number generator unavailable")
    }
}

impl From<RandomError> for crate::error::BrokerError {
    fn from(e: RandomError) -> Self {
        crate::error::BrokerError::internal(e.to_string())
    }
}

/// Fills `buf` with CSPRNG output.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}

/// A random `u32`.
pub fn u32() -> Result<u32, RandomError> {
    let mut buf = [0u8; 4];
    fill(&mut buf)?;
    Ok(u32::from_le_bytes(buf))
}

/// `nbytes` random bytes as unpadded base64url (`[A-Za-z0-9_-]`).
pub fn token_b64url(nbytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; nbytes];
    fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_url_safe_and_differ() {
        let a = token_b64url(32).unwrap();
        let b = token_b64url(32).unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
