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

id_type!(
    /// The random id one request writes with its claim on a one-time row (a
    /// code's spend, a device code's or a hand-off's collection), so that a
    /// claim D1 committed but whose answer it lost is still known to be this
    /// request's (`Db::claim_stands`).
    ClaimId
);

impl ClaimId {
    /// A fresh claim id: 128 random bits.
    pub fn generate() -> Result<ClaimId, crate::random::RandomError> {
        crate::random::token_b64url(16).map(ClaimId)
    }
}

/// Which D1 database a stored grant lives in: 1-based, shard 1 being the
/// first entry of `D1_SHARDS` (`crate::config`). Not secret: a stored authid
/// names its shard in its spelling (`crate::authid`), so a lookup needs no
/// directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(u16);

impl Shard {
    /// Where every grant minted before sharding lives, and every row whose
    /// lookup carries no authid (logins, hand-offs, codes).
    pub const FIRST: Shard = Shard(1);
    /// The highest shard an authid can name (three decimal digits).
    pub const MAX: u16 = 999;

    /// Shard `k` (1-based), if `1 <= k <= 999`.
    pub fn new(k: u16) -> Option<Shard> {
        (k != 0 && k <= Shard::MAX).then_some(Shard(k))
    }

    /// The shard's number, 1-based.
    pub fn number(self) -> u16 {
        self.0
    }

    /// Its position in `D1_SHARDS`, 0-based.
    pub fn index(self) -> usize {
        usize::from(self.0 - 1)
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

    #[test]
    fn shards_are_numbered_from_one_to_999() {
        assert_eq!(Shard::new(0), None);
        assert_eq!(Shard::new(1), Some(Shard::FIRST));
        assert_eq!(Shard::new(999).map(Shard::index), Some(998));
        assert_eq!(Shard::new(1000), None);
        assert_eq!(Shard::FIRST.index(), 0);
    }
}
