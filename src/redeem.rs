//! Redeeming a one-time grant at the OAuth 2.0 token endpoint: an
//! authorization code (RFC 6749 §4.1.3) or a device code (RFC 8628 §3.4).
//!
//! Failure-atomic by construction. A code's row holds, sealed, the whole
//! first answer ([`Issuance`]: the authid the login made and the access token
//! its code exchange obtained). Spending the code is the last thing that can
//! fail: the answer is built from what was opened before the spend, so no
//! provider call, D1 read or lease stands between a spent code and the
//! client's tokens. Background: docs/storage.md, "Redemption".
//!
//! The door that issued the code decides (`shell/routes/authorize.rs`,
//! `shell/routes/device.rs`); the token endpoint (`shell/routes/token.rs`)
//! turns the answer into RFC 6749 §5.1/§5.2 JSON.

use serde::{Deserialize, Serialize};

use crate::authid::AuthId;
use crate::secret::AccessToken;

/// The first answer of a login whose authid goes to a client: sealed with the
/// code (or device code) until it is redeemed. `Debug` is redacted.
pub struct Issuance {
    /// The stored (v1) authid, as shown.
    authid: String,
    /// The access token of the login's code exchange.
    pub access_token: AccessToken,
    /// Unix seconds when it expires.
    pub expires_at: i64,
}

impl std::fmt::Debug for Issuance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuance([redacted])")
    }
}

/// The sealed form (short names: the row holds only ciphertext of it).
#[derive(Serialize, Deserialize)]
struct Wire {
    a: String,
    t: String,
    e: i64,
}

impl Issuance {
    pub fn new(authid: String, access_token: AccessToken, expires_at: i64) -> Issuance {
        Issuance {
            authid,
            access_token,
            expires_at,
        }
    }

    /// The plaintext to seal.
    pub fn to_bytes(&self) -> Vec<u8> {
        let w = Wire {
            a: self.authid.clone(),
            t: self.access_token.secret().to_string(),
            e: self.expires_at,
        };
        // Two strings and an integer always serialise.
        serde_json::to_vec(&w).unwrap_or_default()
    }

    /// An opened payload: `None` if it is not one (a tampered or foreign row).
    pub fn from_bytes(bytes: &[u8]) -> Option<Issuance> {
        let w: Wire = serde_json::from_slice(bytes).ok()?;
        Some(Issuance::new(w.a, AccessToken::new(w.t), w.e))
    }

    /// The authid, parsed (a payload we sealed always parses).
    pub fn authid(&self) -> Option<AuthId> {
        crate::request::stored_authid(&self.authid).ok()
    }

    /// The authid as the client receives it (its `refresh_token`).
    pub fn shown_authid(&self) -> &str {
        &self.authid
    }

    /// `expires_in` for the answer: the seconds the token really has left,
    /// at least 1. Never 0: golang.org/x/oauth2 reads `expires_in: 0` as "never
    /// expires" (oauth2/internal/token.go `expirationTime`), so a token that
    /// has just run out is answered as about to, and the client's next use
    /// refreshes with the authid.
    pub fn expires_in(&self, now: i64) -> i64 {
        self.expires_at.saturating_sub(now).max(1)
    }
}

/// The outcome of presenting a code at the token endpoint.
pub enum Redeemed {
    /// The code was good and is now spent: the first answer of its login.
    Issued(Issuance),
    /// RFC 8628 §3.5 `authorization_pending`: the user has not finished yet.
    Pending,
    /// RFC 8628 §3.5 `slow_down`: polled faster than the interval.
    SlowDown,
    /// RFC 8628 §3.5 `access_denied`: the user (or the provider) refused.
    Denied,
    /// RFC 8628 §3.5 `expired_token`: the device code has expired.
    Expired,
    /// RFC 6749 §5.2 `invalid_grant`: unknown, spent, replayed or expired code,
    /// or a client_id, redirect_uri or PKCE verifier that does not match. The
    /// text is the `error_description` (never carries the code).
    Invalid(&'static str),
}

impl std::fmt::Debug for Redeemed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redeemed::Issued(_) => f.write_str("Issued([redacted])"),
            Redeemed::Pending => f.write_str("Pending"),
            Redeemed::SlowDown => f.write_str("SlowDown"),
            Redeemed::Denied => f.write_str("Denied"),
            Redeemed::Expired => f.write_str("Expired"),
            Redeemed::Invalid(why) => write!(f, "Invalid({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuance_round_trips_through_its_sealed_bytes_and_never_debugs_a_secret() {
        let authid = AuthId::generate(crate::ids::Shard::FIRST)
            .expect("CSPRNG")
            .expose();
        let i = Issuance::new(authid.clone(), AccessToken::new("at-1".into()), 1_000);
        let back = Issuance::from_bytes(&i.to_bytes()).expect("round trip");
        assert_eq!(back.shown_authid(), authid);
        assert_eq!(back.access_token.secret(), "at-1");
        assert_eq!(back.expires_at, 1_000);
        assert!(back.authid().is_some());
        let shown = format!("{i:?} {:?}", Redeemed::Issued(back));
        assert!(
            !shown.contains(&authid) && !shown.contains("at-1"),
            "{shown}"
        );
        // A payload sealed before the first answer was kept (a bare authid) is not one.
        assert!(Issuance::from_bytes(authid.as_bytes()).is_none());
    }

    #[test]
    fn expires_in_is_what_is_left_and_never_zero() {
        let i = Issuance::new(String::new(), AccessToken::new(String::new()), 1_000);
        assert_eq!(i.expires_in(400), 600);
        assert_eq!(i.expires_in(999), 1);
        assert_eq!(i.expires_in(1_000), 1);
        assert_eq!(i.expires_in(5_000), 1);
    }
}
