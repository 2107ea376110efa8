//! The grant: what is sealed in a D1 row. The provider's token response is kept
//! whole (refresh token, scopes, any account id) together with the current access
//! token and its absolute expiry, so a refresh within validity needs no upstream call.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::{AccessToken, RefreshToken};
use crate::upstream::TokenResponse;

/// A cached access token is served only while more than this many seconds remain,
/// so a client never receives a token that dies mid-request.
pub const MIN_REMAINING_SECS: i64 = 60;

/// Lifetime assumed when a provider omits `expires_in` (conservative: one hour).
pub const DEFAULT_EXPIRES_IN: i64 = 3600;

/// The sealed grant payload. `Debug` is hand-written so no token can be logged.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct Grant {
    /// The provider's token response, merged across refreshes.
    pub token: Map<String, Value>,
    /// Unix seconds when `token.access_token` expires.
    pub expires_at: i64,
    /// The keyed hash of the provider account the grant was made with
    /// (`crate::account`): a re-authorization must log in as the same one.
    /// Absent in grants minted before it was recorded, or of a provider that
    /// names no account: those cannot be re-authorized in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grant([redacted])")
    }
}

/// Why a grant cannot be built from a provider response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// The provider issued no refresh token (so nothing can be refreshed later).
    NoRefreshToken,
    /// The stored payload is not a grant (cannot happen for rows we sealed).
    Corrupt,
}

impl From<GrantError> for crate::error::BrokerError {
    /// A code exchange without a refresh token is the user's provider setup; a
    /// payload that opens but is no grant fails closed like a wrong authid.
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::NoRefreshToken => crate::error::BrokerError::BadRequest {
                code: "no_refresh_token",
                what: "the provider issued no refresh token",
            },
            GrantError::Corrupt => crate::error::BrokerError::UnknownAuthId,
        }
    }
}

impl Grant {
    /// A new grant from an authorization_code exchange.
    pub fn from_code_exchange(resp: TokenResponse, now: i64) -> Result<Grant, GrantError> {
        if resp.refresh_token().is_none() {
            return Err(GrantError::NoRefreshToken);
        }
        let expires_at = now.saturating_add(resp.expires_in().unwrap_or(DEFAULT_EXPIRES_IN));
        Ok(Grant {
            token: resp.into_map(),
            expires_at,
            account: None,
        })
    }

    /// Serialises for sealing.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A Map<String, Value> plus an integer always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an opened payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Grant, GrantError> {
        let g: Grant = serde_json::from_slice(bytes).map_err(|_| GrantError::Corrupt)?;
        if g.refresh_token().is_none() {
            return Err(GrantError::Corrupt);
        }
        Ok(g)
    }

    /// The export form for moving a grant to another broker: the provider's
    /// token JSON plus `"service": <provider id>`.
    pub fn export(&self, provider: &str) -> Value {
        let mut m = self.token.clone();
        m.insert("service".into(), Value::String(provider.to_string()));
        Value::Object(m)
    }

    /// Parses an export (see [`Grant::export`]): a JSON object with a non-empty
    /// `refresh_token` and `service`. The imported access token is treated as
    /// expired, so the first use refreshes.
    pub fn import(body: &[u8]) -> Result<(String, Grant), GrantError> {
        let mut token = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => return Err(GrantError::Corrupt),
        };
        let service = match token.remove("service") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => return Err(GrantError::Corrupt),
        };
        let grant = Grant {
            token,
            expires_at: 0,
            account: None,
        };
        if grant.refresh_token().is_none() {
            return Err(GrantError::NoRefreshToken);
        }
        Ok((service, grant))
    }

    /// Whether this is an import the broker has not refreshed yet (an import
    /// marks its access token expired, and every refresh sets a real expiry):
    /// only such a grant may be replaced by another import, since once the
    /// broker has refreshed it, its tokens are newer than any export.
    pub fn awaiting_first_refresh(&self) -> bool {
        self.expires_at == 0
    }

    /// A non-empty string field of the token response.
    fn field(&self, name: &str) -> Option<String> {
        self.token
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// The refresh token to present upstream.
    pub fn refresh_token(&self) -> Option<RefreshToken> {
        self.field("refresh_token").map(RefreshToken::new)
    }

    /// The cached access token and its remaining seconds, if more than
    /// [`MIN_REMAINING_SECS`] remain.
    pub fn cached_access_token(&self, now: i64) -> Option<(AccessToken, i64)> {
        let remaining = self.expires_at.saturating_sub(now);
        if remaining <= MIN_REMAINING_SECS {
            return None;
        }
        Some((self.access_token()?, remaining))
    }

    /// The current access token, whatever its remaining life.
    pub fn access_token(&self) -> Option<AccessToken> {
        self.field("access_token").map(AccessToken::new)
    }

    /// Merges a refresh response: new access token and expiry; a rotated refresh
    /// token replaces the old one; when the provider sends none (Google), the old
    /// one is kept. Other fields the provider sends (scope, ids) are updated.
    pub fn apply_refresh(&mut self, resp: TokenResponse, now: i64) {
        self.expires_at = now.saturating_add(resp.expires_in().unwrap_or(DEFAULT_EXPIRES_IN));
        for (k, v) in resp.into_map() {
            if k == "refresh_token" && v.as_str().is_none_or(str::is_empty) {
                continue;
            }
            self.token.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(json: &str) -> TokenResponse {
        TokenResponse::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_grant_needs_a_refresh_token() {
        let r = resp(r#"{"access_token":"AT","expires_in":3600}"#);
        assert_eq!(
            Grant::from_code_exchange(r, 0).unwrap_err(),
            GrantError::NoRefreshToken
        );
    }

    #[test]
    fn cached_token_is_served_only_while_more_than_60s_remain() {
        let g = Grant::from_code_exchange(
            resp(r#"{"access_token":"AT","refresh_token":"RT","expires_in":3600}"#),
            1000,
        )
        .unwrap();
        let (at, left) = g.cached_access_token(1000).unwrap();
        assert_eq!((at.secret(), left), ("AT", 3600));
        assert_eq!(g.cached_access_token(4600 - 61).unwrap().1, 61);
        assert!(g.cached_access_token(4600 - 60).is_none());
        assert!(g.cached_access_token(9999).is_none());
    }

    #[test]
    fn rotated_refresh_token_replaces_the_old_one() {
        let mut g = Grant::from_code_exchange(
            resp(r#"{"access_token":"AT","refresh_token":"RT1","expires_in":10,"user_id":"u"}"#),
            0,
        )
        .unwrap();
        g.apply_refresh(
            resp(r#"{"access_token":"AT2","refresh_token":"RT2","expires_in":100}"#),
            50,
        );
        assert_eq!(g.refresh_token().unwrap().secret(), "RT2");
        assert_eq!(g.cached_access_token(50).unwrap().0.secret(), "AT2");
        assert_eq!(g.expires_at, 150);
        assert_eq!(g.token["user_id"], "u", "account id survives a refresh");
    }

    #[test]
    fn missing_refresh_token_in_a_refresh_keeps_the_old_one() {
        let mut g =
            Grant::from_code_exchange(resp(r#"{"access_token":"AT","refresh_token":"RT1"}"#), 0)
                .unwrap();
        g.apply_refresh(resp(r#"{"access_token":"AT2","refresh_token":""}"#), 0);
        assert_eq!(g.refresh_token().unwrap().secret(), "RT1");
        g.apply_refresh(resp(r#"{"access_token":"AT3"}"#), 0);
        assert_eq!(g.refresh_token().unwrap().secret(), "RT1");
        assert_eq!(g.expires_at, DEFAULT_EXPIRES_IN);
    }

    #[test]
    fn bytes_round_trip_and_garbage_is_corrupt() {
        let g = Grant::from_code_exchange(
            resp(r#"{"access_token":"AT","refresh_token":"RT","scope":"a b"}"#),
            7,
        )
        .unwrap();
        assert_eq!(Grant::from_bytes(&g.to_bytes()).unwrap(), g);
        assert_eq!(Grant::from_bytes(b"{}").unwrap_err(), GrantError::Corrupt);
        assert_eq!(Grant::from_bytes(b"\xff").unwrap_err(), GrantError::Corrupt);
    }

    #[test]
    fn export_then_import_round_trips_and_forces_a_refresh() {
        let g = Grant::from_code_exchange(
            resp(r#"{"access_token":"AT","refresh_token":"RT","scope":"s","user_id":"u"}"#),
            5,
        )
        .unwrap();
        let exported = g.export("box.com").to_string();
        let (service, imported) = Grant::import(exported.as_bytes()).unwrap();
        assert_eq!(service, "box.com");
        assert_eq!(imported.token, g.token);
        assert!(
            imported.cached_access_token(5).is_none(),
            "first use refreshes"
        );
    }

    #[test]
    fn import_needs_a_refresh_token_and_a_service() {
        assert_eq!(
            Grant::import(br#"{"service":"x","access_token":"a"}"#).unwrap_err(),
            GrantError::NoRefreshToken
        );
        assert_eq!(
            Grant::import(br#"{"refresh_token":"r"}"#).unwrap_err(),
            GrantError::Corrupt
        );
        assert_eq!(Grant::import(b"[]").unwrap_err(), GrantError::Corrupt);
        assert_eq!(Grant::import(b"nope").unwrap_err(), GrantError::Corrupt);
    }

    #[test]
    fn debug_shows_no_token() {
        let g = Grant::from_code_exchange(
            resp(r#"{"access_token":"SECRET_AT","refresh_token":"SECRET_RT"}"#),
            0,
        )
        .unwrap();
        assert!(!format!("{g:?}").contains("SECRET"));
    }
}
