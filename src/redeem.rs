//! What redeeming a one-time grant yields at the OAuth 2.0 token endpoint: an
//! authorization code (RFC 6749 §4.1.3) or a device code (RFC 8628 §3.4). The
//! door that issued the code decides (`shell/routes/authorize.rs`,
//! `shell/routes/device.rs`); the token endpoint (`shell/routes/token.rs`)
//! turns the answer into RFC 6749 §5.1/§5.2 JSON, serving the access token for
//! a yielded authid through the same single-flight refresh as every door.

use crate::authid::AuthId;

/// The outcome of presenting a code at the token endpoint.
pub enum Redeemed {
    /// The code was good and is now spent: the stored (v1) authid its login
    /// made, which the client receives as its `refresh_token`.
    AuthId(AuthId),
    /// RFC 8628 §3.5 `authorization_pending`: the user has not finished yet.
    Pending,
    /// RFC 8628 §3.5 `slow_down`: polled faster than the interval.
    SlowDown,
    /// RFC 8628 §3.5 `access_denied`: the user (or the provider) refused.
    Denied,
    /// RFC 8628 §3.5 `expired_token`: the device code has expired.
    Expired,
    /// RFC 6749 §5.2 `invalid_grant`: unknown, spent or expired code, or a
    /// client_id, redirect_uri or PKCE verifier that does not match. The text
    /// is the `error_description` (never carries the code).
    Invalid(&'static str),
}

impl std::fmt::Debug for Redeemed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redeemed::AuthId(_) => f.write_str("AuthId([redacted])"),
            Redeemed::Pending => f.write_str("Pending"),
            Redeemed::SlowDown => f.write_str("SlowDown"),
            Redeemed::Denied => f.write_str("Denied"),
            Redeemed::Expired => f.write_str("Expired"),
            Redeemed::Invalid(why) => write!(f, "Invalid({why})"),
        }
    }
}
