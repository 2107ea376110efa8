//! Jottacloud's CLI-token login (Duplicati's `/cli-token?id=jottacloud`): the
//! user pastes the "CLI token" Jottacloud shows (base64url JSON with `username`
//! and `auth_token`), and the broker trades it for a grant with a
//! `grant_type=password` call (`crate::upstream::password_grant`).
//!
//! Shapes followed, duplicati/oauth-handler at 6d9aa7d:
//! - the form (templates/cli-token.html L26-28) posts `id` and `token` to
//!   `/cli-token-login`;
//! - the token (main.py L416-421) is base64url, padding optional, of a JSON
//!   object whose `username` and `auth_token` (L433-434) are used.
//!
//! Stricter than oauth-handler: only the base64url alphabet, a JSON object, both
//! fields non-empty strings, at most [`MAX_CLI_TOKEN_CHARS`]; a bad token is a
//! 400 page that never echoes it (oauth-handler showed the error where the
//! authid goes).
//!
//! The form is protected against login CSRF (RFC 9700 §4.7: a page elsewhere
//! posting the attacker's CLI token, so that the victim's Duplicati receives an
//! authid for the attacker's storage) by a double-submit token: `GET /cli-token`
//! sets 256 random bits in a `__Host-` cookie (Secure, host-only, so neither
//! another site nor a sibling subdomain can plant it; SameSite=Lax, so a
//! cross-site POST does not carry it) and puts the same value in the form; the
//! POST must bring both, equal (constant-time compare). Nothing is stored, so
//! the page costs no D1 write. CSP `form-action 'self'` keeps the form here.

use base64::Engine as _;
use serde_json::Value;

use crate::error::BrokerError;
use crate::random;
use crate::secret::{ct_eq, secret_type, StateToken};

/// Longest CLI token accepted (Jottacloud's are a few hundred characters).
pub const MAX_CLI_TOKEN_CHARS: usize = 8 * 1024;

/// The double-submit cookie of the CLI-token form.
pub const CSRF_COOKIE: &str = "__Host-broker-cli";

/// How long the form may stay open.
pub const CSRF_TTL_SECS: i64 = 600;

secret_type!(
    /// A Jottacloud CLI token's `auth_token`: sent upstream as the password.
    AuthToken
);

/// A parsed CLI token. `Debug` is redacted (the username is personal data).
pub struct CliToken {
    username: String,
    auth_token: AuthToken,
}

impl std::fmt::Debug for CliToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CliToken([redacted])")
    }
}

/// Why a CLI token or its form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliTokenError {
    /// Not base64url JSON with non-empty `username` and `auth_token`.
    Malformed,
    /// The form's CSRF token is missing or not this browser's cookie.
    Csrf,
    /// The provider refused the token (RFC 6749 §5.2 `invalid_grant`).
    Rejected,
}

impl From<CliTokenError> for BrokerError {
    fn from(e: CliTokenError) -> Self {
        match e {
            CliTokenError::Malformed => BrokerError::BadRequest {
                code: "bad_cli_token",
                what: "that is not a CLI token (base64url JSON with username and auth_token)",
            },
            CliTokenError::Csrf => BrokerError::InvalidLoginState,
            // oauth-handler main.py L441-442: "create a new and try again".
            CliTokenError::Rejected => BrokerError::BadRequest {
                code: "cli_token_rejected",
                what: "the provider did not accept this CLI token; create a new one and try again",
            },
        }
    }
}

impl CliToken {
    /// Parses a pasted CLI token (surrounding whitespace ignored).
    pub fn parse(raw: &str) -> Result<CliToken, CliTokenError> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_CLI_TOKEN_CHARS {
            return Err(CliTokenError::Malformed);
        }
        // Padding is optional, as oauth-handler pads before decoding (L419).
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| CliTokenError::Malformed)?;
        let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&bytes) else {
            return Err(CliTokenError::Malformed);
        };
        let mut field = |name: &str| match obj.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            _ => Err(CliTokenError::Malformed),
        };
        Ok(CliToken {
            username: field("username")?,
            auth_token: AuthToken::new(field("auth_token")?),
        })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn auth_token(&self) -> &AuthToken {
        &self.auth_token
    }
}

/// A new double-submit value for the form and its cookie.
pub fn new_csrf() -> Result<StateToken, BrokerError> {
    Ok(StateToken::new(random::token_b64url(32)?))
}

/// The POST must carry the form's value and the same value in the cookie.
pub fn check_csrf(cookie: Option<&str>, field: Option<&str>) -> Result<(), CliTokenError> {
    match (cookie, field) {
        (Some(c), Some(f)) if !c.is_empty() && ct_eq(c.as_bytes(), f.as_bytes()) => Ok(()),
        _ => Err(CliTokenError::Csrf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn a_cli_token_is_base64url_json_with_username_and_auth_token() {
        let t = CliToken::parse(&b64(
            r#"{"username":"me@example.com","realm":"jottacloud","auth_token":"s3cr?t>>","well_known_link":"x"}"#,
        ))
        .unwrap();
        assert_eq!(t.username(), "me@example.com");
        assert_eq!(t.auth_token().secret(), "s3cr?t>>");
        // With padding, and pasted with whitespace around it.
        let padded = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"username":"uu","auth_token":"a"}"#);
        assert!(padded.ends_with('='));
        assert!(CliToken::parse(&format!("  {padded}\n")).is_ok());
        assert!(!format!("{t:?}").contains("me@"));
    }

    #[test]
    fn anything_else_is_malformed() {
        let too_long = "A".repeat(MAX_CLI_TOKEN_CHARS + 1);
        let std_alphabet = base64::engine::general_purpose::STANDARD
            .encode(r#"{"username":"u??","auth_token":"a>>"}"#);
        assert!(std_alphabet.contains('/') || std_alphabet.contains('+'));
        for bad in [
            String::new(),
            "   ".into(),
            "not base64!".into(),
            too_long,
            std_alphabet,
            b64("not json"),
            b64(r#"["username","auth_token"]"#),
            b64(r#"{"username":"u"}"#),
            b64(r#"{"auth_token":"a"}"#),
            b64(r#"{"username":"","auth_token":"a"}"#),
            b64(r#"{"username":"u","auth_token":""}"#),
            b64(r#"{"username":1,"auth_token":"a"}"#),
            b64(r#"{"username":"u","auth_token":null}"#),
        ] {
            assert_eq!(
                CliToken::parse(&bad).unwrap_err(),
                CliTokenError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_form_needs_this_browsers_double_submit_token() {
        let t = new_csrf().unwrap();
        let v = t.secret();
        assert_eq!(v.len(), 43);
        assert!(check_csrf(Some(v), Some(v)).is_ok());
        let other = new_csrf().unwrap();
        for (c, f) in [
            (None, Some(v)),
            (Some(v), None),
            (Some(other.secret()), Some(v)),
            (Some(""), Some("")),
            (None, None),
        ] {
            assert_eq!(check_csrf(c, f), Err(CliTokenError::Csrf));
        }
    }

    #[test]
    fn refusals_are_400_pages_that_never_echo_the_token() {
        for e in [
            CliTokenError::Malformed,
            CliTokenError::Csrf,
            CliTokenError::Rejected,
        ] {
            assert_eq!(BrokerError::from(e).status(), 400);
        }
    }
}
