//! Requests to a provider's token and revocation endpoints, and how their answers
//! are classified. Pure: the shell sends what this builds and hands back status
//! and body. Client authentication is `client_secret_post` (RFC 6749 §2.3.1),
//! which every built-in provider accepts; a public client (RFC 6749 §2.1,
//! Jottacloud's `jottacli`) sends its `client_id` and no secret.

use serde_json::{Map, Value};
use url::form_urlencoded::Serializer;

use crate::cli_token::CliToken;
use crate::error::BrokerError;
use crate::providers::Provider;
use crate::secret::{ClientSecret, RefreshToken};

/// Upper bound on a provider response body we parse (token JSON is tiny).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// A form-encoded POST to send upstream. `Debug` is redacted: the body holds secrets.
pub struct FormPost {
    pub url: String,
    pub body: String,
}

impl std::fmt::Debug for FormPost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormPost")
            .field("url", &self.url)
            .field("body", &"[redacted]")
            .finish()
    }
}

/// `client_id`, and `client_secret` unless the client is public (`None`).
fn client_auth(f: &mut Serializer<'_, String>, provider: &Provider, secret: Option<&ClientSecret>) {
    f.append_pair("client_id", &provider.client_id);
    if let Some(s) = secret {
        f.append_pair("client_secret", s.secret());
    }
}

/// RFC 6749 §4.1.3: exchange an authorization code (with the PKCE verifier, RFC 7636 §4.5)
/// at `token_url` (the provider's, or its region's: `Provider::token_endpoint`).
pub fn code_exchange(
    provider: &Provider,
    token_url: &str,
    secret: Option<&ClientSecret>,
    code: &str,
    redirect_uri: &str,
    pkce_verifier: Option<&str>,
) -> FormPost {
    let mut f = Serializer::new(String::new());
    f.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri);
    client_auth(&mut f, provider, secret);
    if let Some(v) = pkce_verifier {
        f.append_pair("code_verifier", v);
    }
    FormPost {
        url: token_url.to_string(),
        body: f.finish(),
    }
}

/// RFC 6749 §6: refresh. `redirect_uri` is sent only where the provider wants it.
pub fn refresh(
    provider: &Provider,
    secret: Option<&ClientSecret>,
    refresh_token: &RefreshToken,
    redirect_uri: &str,
) -> FormPost {
    let mut f = Serializer::new(String::new());
    f.append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token.secret());
    client_auth(&mut f, provider, secret);
    if provider.refresh_sends_redirect_uri {
        f.append_pair("redirect_uri", redirect_uri);
    }
    FormPost {
        url: provider.token_url.clone(),
        body: f.finish(),
    }
}

/// RFC 7009 §2.1: revoke a refresh token, where the provider has an endpoint.
pub fn revoke(
    provider: &Provider,
    secret: Option<&ClientSecret>,
    refresh_token: &RefreshToken,
) -> Option<FormPost> {
    let url = provider.revoke_url.clone()?;
    let mut f = Serializer::new(String::new());
    f.append_pair("token", refresh_token.secret())
        .append_pair("token_type_hint", "refresh_token");
    client_auth(&mut f, provider, secret);
    Some(FormPost {
        url,
        body: f.finish(),
    })
}

/// RFC 6749 §4.3: the resource owner password credentials grant Jottacloud's
/// CLI-token login makes, field for field as oauth-handler main.py (6d9aa7d)
/// L430-438 does: `client_id`, `grant_type=password`, `scope`, `username`,
/// `password` = the CLI token's `auth_token`, form-encoded (`requests.post(url,
/// data=…)`), and a client secret only if the provider has one.
pub fn password_grant(
    provider: &Provider,
    secret: Option<&ClientSecret>,
    token: &CliToken,
) -> FormPost {
    let mut f = Serializer::new(String::new());
    f.append_pair("grant_type", "password")
        .append_pair("scope", &provider.scopes)
        .append_pair("username", token.username())
        .append_pair("password", token.auth_token().secret());
    client_auth(&mut f, provider, secret);
    FormPost {
        url: provider.token_url.clone(),
        body: f.finish(),
    }
}

/// A successful token endpoint answer (RFC 6749 §5.1), kept whole.
#[derive(Clone, PartialEq)]
pub struct TokenResponse(Map<String, Value>);

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse([redacted])")
    }
}

impl TokenResponse {
    /// Parses a 2xx body: a JSON object with a non-empty string `access_token`.
    pub fn parse(body: &[u8]) -> Option<TokenResponse> {
        if body.len() > MAX_TOKEN_RESPONSE_BYTES {
            return None;
        }
        let map = match serde_json::from_slice::<Value>(body).ok()? {
            Value::Object(m) => m,
            _ => return None,
        };
        let ok = map
            .get("access_token")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        ok.then_some(TokenResponse(map))
    }

    /// `refresh_token`, if present and non-empty.
    pub fn refresh_token(&self) -> Option<&str> {
        self.0
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `access_token` (always present once parsed).
    pub fn access_token(&self) -> &str {
        self.0
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `expires_in` in seconds; providers send a number or a numeric string.
    pub fn expires_in(&self) -> Option<i64> {
        match self.0.get("expires_in")? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|n| *n > 0)
    }

    /// Any other field of the answer (an account id, an `id_token`).
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The whole object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// How a token endpoint answer is classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Upstream {
    Ok(TokenResponse),
    /// RFC 6749 §5.2 `invalid_grant`: the refresh token or code is dead; the user must act.
    InvalidGrant,
    /// The provider refused the broker's own client (RFC 6749 §5.2
    /// `invalid_client` or `unauthorized_client`, or any other 401): a wrong or
    /// expired client secret, a deleted app. The operator must act; the grant
    /// is not at fault and is kept as it is.
    ClientRejected,
    /// Anything else: retryable for clients; why, for the operator ([`Failure`]).
    Failed(Failure),
}

/// Why a token endpoint answer that is no token and no verdict on the grant
/// or the client failed: what the doctor counts and the log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Another 4xx (a request the provider refused, e.g. `invalid_request`).
    Refused,
    /// A 5xx (or any other non-2xx status): the provider is down or overloaded.
    Unavailable,
    /// A 2xx that is no token answer (not JSON, no access token, too large).
    Malformed,
}

/// How one upstream token call ended, as recorded (`grants.last_outcome`,
/// the doctor's 24-hour counts) and logged (`upstream_token`'s `outcome`):
/// `answer` is the classified answer, or why there was none.
pub fn outcome(answer: &Result<Upstream, BrokerError>) -> &'static str {
    match answer {
        Ok(Upstream::Ok(_)) => "ok",
        Ok(Upstream::InvalidGrant) => "invalid_grant",
        Ok(Upstream::ClientRejected) => "client_rejected",
        Ok(Upstream::Failed(Failure::Refused)) => "provider_4xx",
        Ok(Upstream::Failed(Failure::Unavailable)) => "provider_5xx",
        Ok(Upstream::Failed(Failure::Malformed)) => "malformed",
        Err(BrokerError::ProviderTimeout) => "timeout",
        Err(_) => "unreachable",
    }
}

/// Classifies a token endpoint answer by status and body. Never returns the body.
pub fn classify(status: u16, body: &[u8]) -> Upstream {
    if (200..300).contains(&status) {
        return TokenResponse::parse(body)
            .map_or(Upstream::Failed(Failure::Malformed), Upstream::Ok);
    }
    match (status, oauth_error(body).as_deref()) {
        (400 | 401, Some("invalid_grant")) => Upstream::InvalidGrant,
        (400 | 401, Some("invalid_client" | "unauthorized_client")) | (401, _) => {
            Upstream::ClientRejected
        }
        (400..=499, _) => Upstream::Failed(Failure::Refused),
        _ => Upstream::Failed(Failure::Unavailable),
    }
}

/// The RFC 6749 §5.2 `error` code of an error answer, for the log: only when
/// it looks like one (1–40 of `a-z`, `_`), so a provider that puts something
/// else there (a message, a token) never reaches a log line.
pub fn oauth_error(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?.as_str()?;
    (!e.is_empty() && e.len() <= 40 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .then(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalogue;

    fn form(body: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    fn provider(id: &str) -> Provider {
        let mut p = Catalogue::load(None).unwrap().get(id).unwrap().clone();
        p.client_id = "cid".into();
        p
    }

    #[test]
    fn code_exchange_sends_verifier_and_redirect_uri() {
        let p = provider("googledrive");
        let post = code_exchange(
            &p,
            &p.token_url,
            Some(&ClientSecret::new("sec&ret".into())),
            "c0de",
            "https://b/callback/googledrive",
            Some("ver"),
        );
        assert_eq!(post.url, "https://oauth2.googleapis.com/token");
        let f = form(&post.body);
        for (k, v) in [
            ("grant_type", "authorization_code"),
            ("code", "c0de"),
            ("redirect_uri", "https://b/callback/googledrive"),
            ("client_id", "cid"),
            ("client_secret", "sec&ret"),
            ("code_verifier", "ver"),
        ] {
            assert!(f.contains(&(k.into(), v.into())), "{k}");
        }
        assert!(!format!("{post:?}").contains("sec"));
    }

    #[test]
    fn dropbox_refresh_omits_redirect_uri_microsoft_sends_it() {
        let s = ClientSecret::new("s".into());
        let rt = RefreshToken::new("rt".into());
        let s = Some(&s);
        let d = form(&refresh(&provider("dropbox"), s, &rt, "https://b/callback/dropbox").body);
        assert!(!d.iter().any(|(k, _)| k == "redirect_uri"));
        assert!(d.contains(&("refresh_token".into(), "rt".into())));
        let m = form(&refresh(&provider("onedrivev2"), s, &rt, "https://b/cb").body);
        assert!(m.contains(&("redirect_uri".into(), "https://b/cb".into())));
    }

    #[test]
    fn revoke_only_where_the_provider_has_an_endpoint() {
        let s = ClientSecret::new("s".into());
        let rt = RefreshToken::new("rt".into());
        assert!(revoke(&provider("onedrivev2"), Some(&s), &rt).is_none());
        assert!(revoke(&provider("jottacloud"), None, &rt).is_none());
        let post = revoke(&provider("box.com"), Some(&s), &rt).unwrap();
        assert_eq!(post.url, "https://api.box.com/oauth2/revoke");
        assert!(form(&post.body).contains(&("token".into(), "rt".into())));
    }

    #[test]
    fn jottacloud_password_grant_sends_the_cli_token_and_no_client_secret() {
        let p = Catalogue::load(None)
            .unwrap()
            .get("jottacloud")
            .unwrap()
            .clone();
        // {"username":"u@example.com","auth_token":"at&1"}
        let token =
            CliToken::parse("eyJ1c2VybmFtZSI6InVAZXhhbXBsZS5jb20iLCJhdXRoX3Rva2VuIjoiYXQmMSJ9")
                .unwrap();
        let post = password_grant(&p, None, &token);
        assert_eq!(
            post.url,
            "https://id.jottacloud.com/auth/realms/jottacloud/protocol/openid-connect/token"
        );
        let mut f = form(&post.body);
        f.sort();
        let want: Vec<(String, String)> = [
            ("client_id", "jottacli"),
            ("grant_type", "password"),
            ("password", "at&1"),
            ("scope", "openid offline_access"),
            ("username", "u@example.com"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(f, want);
        assert!(!format!("{post:?}").contains("at&1"));
        // Its refreshes are public too.
        let r = form(&refresh(&p, None, &RefreshToken::new("rt".into()), "https://b/cb").body);
        assert!(r.contains(&("client_id".into(), "jottacli".into())));
        assert!(!r.iter().any(|(k, _)| k == "client_secret"));
    }

    #[test]
    fn classify_follows_rfc6749_section_5() {
        assert!(matches!(
            classify(200, br#"{"access_token":"a","expires_in":"3599"}"#),
            Upstream::Ok(r) if r.expires_in() == Some(3599) && r.access_token() == "a"
        ));
        assert_eq!(
            classify(200, b"<html>"),
            Upstream::Failed(Failure::Malformed)
        );
        assert_eq!(
            classify(200, br#"{"access_token":""}"#),
            Upstream::Failed(Failure::Malformed)
        );
        assert_eq!(
            classify(200, br#"[1]"#),
            Upstream::Failed(Failure::Malformed)
        );
        assert_eq!(
            classify(400, br#"{"error":"invalid_grant"}"#),
            Upstream::InvalidGrant
        );
        assert_eq!(
            classify(401, br#"{"error":"invalid_grant"}"#),
            Upstream::InvalidGrant
        );
        assert_eq!(
            classify(400, br#"{"error":"invalid_client"}"#),
            Upstream::ClientRejected
        );
        assert_eq!(
            classify(401, br#"{"error":"invalid_client"}"#),
            Upstream::ClientRejected
        );
        assert_eq!(
            classify(400, br#"{"error":"unauthorized_client"}"#),
            Upstream::ClientRejected
        );
        assert_eq!(classify(401, b"<html>"), Upstream::ClientRejected);
        assert_eq!(classify(404, b""), Upstream::Failed(Failure::Refused));
        assert_eq!(classify(302, b""), Upstream::Failed(Failure::Unavailable));
        assert_eq!(
            classify(400, br#"{"error":"invalid_request"}"#),
            Upstream::Failed(Failure::Refused)
        );
        assert_eq!(
            classify(500, br#"{"error":"invalid_grant"}"#),
            Upstream::Failed(Failure::Unavailable)
        );
        assert_eq!(classify(503, b""), Upstream::Failed(Failure::Unavailable));
        let huge = vec![b' '; MAX_TOKEN_RESPONSE_BYTES + 1];
        assert_eq!(classify(200, &huge), Upstream::Failed(Failure::Malformed));
    }

    #[test]
    fn each_way_a_token_call_ends_has_its_own_recorded_outcome() {
        let all = [
            Ok(classify(200, br#"{"access_token":"a"}"#)),
            Ok(classify(400, br#"{"error":"invalid_grant"}"#)),
            Ok(classify(401, b"")),
            Ok(classify(400, br#"{"error":"invalid_request"}"#)),
            Ok(classify(503, b"")),
            Ok(classify(200, b"<html>")),
            Err(BrokerError::ProviderTimeout),
            Err(BrokerError::ProviderFailed),
        ];
        let names: Vec<&str> = all.iter().map(outcome).collect();
        assert_eq!(
            names,
            [
                "ok",
                "invalid_grant",
                "client_rejected",
                "provider_4xx",
                "provider_5xx",
                "malformed",
                "timeout",
                "unreachable"
            ]
        );
    }

    #[test]
    fn only_a_code_shaped_oauth_error_reaches_the_log() {
        assert_eq!(
            oauth_error(br#"{"error":"invalid_client"}"#).as_deref(),
            Some("invalid_client")
        );
        for body in [
            &br#"{"error":"Invalid client secret provided"}"#[..],
            br#"{"error":"rt_5f2a9c"}"#,
            br#"{"error":""}"#,
            br#"{"error":{"code":1}}"#,
            b"<html>",
        ] {
            assert_eq!(oauth_error(body), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn expires_in_rejects_nonsense() {
        let r = |j: &str| TokenResponse::parse(j.as_bytes()).unwrap().expires_in();
        assert_eq!(r(r#"{"access_token":"a","expires_in":-5}"#), None);
        assert_eq!(r(r#"{"access_token":"a","expires_in":"x"}"#), None);
        assert_eq!(r(r#"{"access_token":"a","expires_in":true}"#), None);
        assert_eq!(r(r#"{"access_token":"a","expires_in":60}"#), Some(60));
    }
}
