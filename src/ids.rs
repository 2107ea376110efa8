//! Non-secret identifiers as their own types, so a run of `&str` arguments
//! cannot be passed in the wrong order (the secret ones live in `crate::secret`).

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                $name(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A grant row's primary key: hex HMAC of the authid's keyid under a server
    /// secret version (`crate::seal`). Not secret: useless without that secret.
    KeyHash
);

id_type!(
    /// A provider's canonical id (`dropbox`, `googledrive`, …).
    ProviderId
);

id_type!(
    /// The random id of the request holding a grant's refresh lease.
    LeaseId
);

impl LeaseId {
    /// A fresh lease id: 128 random bits.
    pub fn generate() -> Result<LeaseId, crate::random::RandomError> {
        crate::random::token_b64url(16).map(LeaseId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_their_value_and_lease_ids_are_fresh() {
        assert_eq!(ProviderId::new("box.com").to_string(), "box.com");
        assert_eq!(KeyHash::new("ab").as_str(), "ab");
        let (a, b) = (LeaseId::generate().unwrap(), LeaseId::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
    }
}
