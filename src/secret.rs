//! Secret newtypes, after oauth2-rs's `new_secret_type!`: each secret is its own
//! type whose `Debug` prints `Name([redacted])`, which has no `Display`, and whose
//! raw value is reachable only through an explicit `.secret()`, so a secret
//! cannot reach a log line or an error message by accident. Equality is constant
//! time. Types that must not be reused by accident (used once, or key material)
//! are not `Clone`.

use subtle::ConstantTimeEq;

/// Constant-time equality: the content of the inputs does not affect timing.
/// Inputs of different lengths compare unequal at once (the length may leak,
/// the content may not).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `secret_type!(/// docs \n Name)` defines a non-`Clone` secret newtype over
/// `String`; `secret_type!(Name, Clone)` a `Clone` one. Nothing else can be
/// derived: a derived `Debug`, `PartialEq`, `Hash` or `Ord` would leak the value
/// or compare it in variable time.
macro_rules! secret_type {
    ($(#[$meta:meta])* $name:ident, Clone) => {
        $crate::secret::secret_type!($(#[$meta])* #[derive(Clone)] $name);
    };
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        pub struct $name(::std::string::String);

        impl $name {
            pub fn new(s: ::std::string::String) -> Self {
                Self(s)
            }

            /// The raw secret. Every call site is a place a secret leaves its box.
            pub fn secret(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl ::std::cmp::PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                $crate::secret::ct_eq(self.0.as_bytes(), other.0.as_bytes())
            }
        }

        impl ::std::cmp::Eq for $name {}
    };
}
pub(crate) use secret_type;

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
    fn debug_is_redacted_for_every_secret_type() {
        let raw = "super-secret-value";
        let shown = [
            format!("{:?}", RefreshToken::new(raw.into())),
            format!("{:?}", AccessToken::new(raw.into())),
            format!("{:?}", ClientSecret::new(raw.into())),
            format!("{:?}", AuthorizationCode::new(raw.into())),
            format!("{:?}", StateToken::new(raw.into())),
            format!("{:?}", AuthSecret::new(raw.into())),
            format!("{:?}", Some(RefreshToken::new(raw.into()))),
        ];
        for s in &shown {
            assert!(!s.contains(raw) && s.contains("([redacted])"), "{s}");
        }
        assert_eq!(shown[0], "RefreshToken([redacted])");
        assert_eq!(RefreshToken::new(raw.into()).secret(), raw);
    }

    #[test]
    fn ct_eq_truth_table() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"bbc"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"ab", b"abc"));
        assert!(!ct_eq(b"", b"a"));
        assert_eq!(StateToken::new("x".into()), StateToken::new("x".into()));
        assert_ne!(StateToken::new("x".into()), StateToken::new("y".into()));
        assert_ne!(AuthSecret::new("x".into()), AuthSecret::new("xx".into()));
    }
}
