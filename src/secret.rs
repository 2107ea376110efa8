//! Secret newtypes (after oauth2-rs's `new_secret_type!`): each secret is its own
//! type whose `Debug` prints `Name([redacted])`, which has no `Display`, and whose
//! raw value is reachable only through an explicit `.secret()`. Equality is
//! constant time. Types that must not be reused by accident are not `Clone`.

use subtle::ConstantTimeEq;

/// Constant-time equality: the content of the inputs does not affect timing
/// (their lengths may).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident $(, $derive:ident)*) => {
        $(#[$meta])*
        $(#[derive($derive)])*
        pub struct $name(String);

        impl $name {
            pub fn new(s: String) -> Self {
                Self(s)
            }

            /// The raw secret. Every call site is a place a secret leaves its box.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                ct_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl Eq for $name {}
    };
}

secret_type!(
    /// RFC 6749 §1.5 refresh token.
    RefreshToken,
    Clone
);
secret_type!(
    /// RFC 6749 §1.4 access token.
    AccessToken,
    Clone
);
secret_type!(
    /// RFC 6749 §2.3.1 client secret of the broker's OAuth app.
    ClientSecret,
    Clone
);
secret_type!(
    /// RFC 6749 §4.1.2 authorization code: used once, so not `Clone`.
    AuthorizationCode
);
secret_type!(
    /// RFC 6749 §10.12 `state`, and the browser-binding cookie value.
    StateToken,
    Clone
);
secret_type!(
    /// The secret half of an authid (key material for its grant): not `Clone`.
    AuthSecret
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let t = RefreshToken::new("super-secret-value".into());
        assert_eq!(format!("{t:?}"), "RefreshToken([redacted])");
        let s = AuthSecret::new("another-secret".into());
        assert!(!format!("{s:?}").contains("another"));
        assert_eq!(t.secret(), "super-secret-value");
    }

    #[test]
    fn ct_eq_truth_table() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b"a"));
        assert_eq!(StateToken::new("x".into()), StateToken::new("x".into()));
        assert_ne!(StateToken::new("x".into()), StateToken::new("y".into()));
    }
}
