//! The standard OAuth 2.0 front door, decided without the runtime: the token
//! request (RFC 6749 §3.2, §4.1.3, §6; RFC 8628 §3.4) and its client
//! authentication (§2.3.1), the answers of §5.1 and §5.2, the issuer
//! identifier, and the RFC 8414 metadata document that names every endpoint. The shell's routes
//! (`shell/routes/{token,revocation,metadata}.rs`) read the request, call the
//! same token service as every other door (`shell::tokens`), and shape the
//! answer here. The broker's refresh token is the authid.
//!
//! Two client facts shape the error answers:
//! - rclone ≥ 1.62 stops retrying a refresh only on a 400 or 401
//!   (rclone/rclone v1.62.0 `lib/oauthutil/oauthutil.go:219-222`,
//!   `maybeWrapOAuthError`; 1.60 always tries 5 times, v1.60.1 `:220-247`),
//!   so every permanent failure (unknown, wrong or
//!   revoked authid, re-authorization needed) is 400 `invalid_grant`, and only
//!   transient ones are 5xx (`temporarily_unavailable` with `Retry-After`).
//! - golang.org/x/oauth2 without a configured auth style sends the client
//!   credentials by HTTP Basic first and, on ANY error, sends the same request
//!   again with them in the body (golang/oauth2@89ff2e1 `internal/token.go:215-247`,
//!   `RetrieveToken`: `needsAuthStyleProbe`, then `AuthStyleInParams // the
//!   second way we'll try`). Both are accepted alike here, and a failure that
//!   cost an upstream call is remembered for a moment ([`FailureMemo`]) so
//!   that the probe's second request gets the same answer without a second
//!   provider call.

use base64::Engine;
use serde_json::{json, Value};

use crate::error::BrokerError;
use crate::memo::Memo;
use crate::request::{single, Params};

/// Where the front door's endpoints live (the metadata advertises them).
pub const TOKEN_PATH: &str = "/oauth/token";
/// The token endpoint at the root too, where people who write an rclone
/// `token_url` by hand (without discovery) put it first: served like [`TOKEN_PATH`].
pub const TOKEN_ALIAS_PATH: &str = "/token";
pub const REVOCATION_PATH: &str = "/oauth/revoke";
pub const AUTHORIZATION_PATH: &str = "/oauth/authorize";
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/device_authorization";
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// RFC 8414 §3.1's location of the metadata of the issuer `<origin>/k/<key>`
/// (the well-known string inserted before the issuer's path): followed by the
/// key, as one path segment.
pub const METADATA_PATH_INSERTED_KEY: &str = "/.well-known/oauth-authorization-server/k/";

/// RFC 8628 §3.4's grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A token request's `grant_type` (RFC 6749 §4.1.3, §6; RFC 8628 §3.4), with
/// the refresh token it carries. The one-time codes stay in the form: the
/// door that issued them reads them.
pub enum GrantType {
    /// `grant_type=refresh_token`: the authid (v1 or v2), as sent.
    RefreshToken(String),
    AuthorizationCode,
    DeviceCode,
}

impl std::fmt::Debug for GrantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrantType::RefreshToken(_) => f.write_str("RefreshToken([redacted])"),
            GrantType::AuthorizationCode => f.write_str("AuthorizationCode"),
            GrantType::DeviceCode => f.write_str("DeviceCode"),
        }
    }
}

/// The client's credentials as presented (RFC 6749 §2.3.1). Clients are
/// public: `client_id` names a provider where a login starts, and the secret
/// matters only as the operator's access key when the gate is on.
#[derive(Default)]
pub struct Client {
    pub id: Option<String>,
    /// Never logged (`Debug` redacts it): it may be the operator's access key.
    pub secret: Option<String>,
    /// The credentials came by HTTP Basic.
    pub basic: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("basic", &self.basic)
            .finish()
    }
}

/// A parsed token request.
#[derive(Debug)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    pub client: Client,
}

const fn bad(code: &'static str, what: &'static str) -> BrokerError {
    BrokerError::BadRequest { code, what }
}

/// RFC 6749 §5.2 `invalid_client` for a malformed `Authorization` header.
pub const BAD_BASIC: BrokerError = bad(
    "invalid_client",
    "the Authorization header is not valid HTTP Basic client authentication",
);

/// The access gate's answer on the front door: RFC 6749 §5.2 `invalid_client`.
pub const INVALID_CLIENT: BrokerError = BrokerError::Forbidden {
    code: "invalid_client",
    what: "this broker needs an access key as client_secret (HTTP Basic or form)",
};

/// Decodes `Authorization: Basic …` into client id and secret. Each half is
/// form-urlencoded before it is base64-encoded (RFC 6749 §2.3.1), so `+` is a
/// space and `%3A` a colon; golang.org/x/oauth2 encodes them so
/// (golang/oauth2@89ff2e1 `internal/token.go:202`: `url.QueryEscape` of each). `None` for
/// another scheme (it is not client authentication).
pub fn parse_basic(header: &str) -> Option<Result<(String, String), BrokerError>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(pair) = decoded else {
        return Some(Err(BAD_BASIC));
    };
    let Some((id, secret)) = pair.split_once(':') else {
        return Some(Err(BAD_BASIC));
    };
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((unescape(id), unescape(secret))))
}

/// Reads the client's credentials from the `Authorization` header and the
/// form. Sending both ways is allowed when they agree (some clients repeat
/// `client_id` in the body); disagreeing credentials are `invalid_request`.
pub fn client_auth(authorization: Option<&str>, form: &Params) -> Result<Client, BrokerError> {
    let body_id = single(form, "client_id")?.filter(|v| !v.is_empty());
    let body_secret = single(form, "client_secret")?.filter(|v| !v.is_empty());
    let basic = match authorization.and_then(parse_basic) {
        Some(r) => Some(r?),
        None => None,
    };
    let Some((id, secret)) = basic else {
        return Ok(Client {
            id: body_id.map(str::to_string),
            secret: body_secret.map(str::to_string),
            basic: false,
        });
    };
    let id = Some(id).filter(|v| !v.is_empty());
    let secret = Some(secret).filter(|v| !v.is_empty());
    let disagree = |a: Option<&str>, b: Option<&str>| matches!((a, b), (Some(a), Some(b)) if !crate::secret::ct_eq(a.as_bytes(), b.as_bytes()));
    if disagree(id.as_deref(), body_id) || disagree(secret.as_deref(), body_secret) {
        return Err(bad(
            "invalid_request",
            "client credentials were sent twice (HTTP Basic and form) and differ",
        ));
    }
    Ok(Client {
        id: id.or(body_id.map(str::to_string)),
        secret: secret.or(body_secret.map(str::to_string)),
        basic: true,
    })
}

/// Parses a token request: the grant it asks for and the client's credentials.
pub fn parse_token_request(
    authorization: Option<&str>,
    form: &Params,
) -> Result<TokenRequest, BrokerError> {
    let client = client_auth(authorization, form)?;
    let grant_type = match single(form, "grant_type")? {
        None | Some("") => {
            return Err(bad("invalid_request", "grant_type is missing"));
        }
        Some("refresh_token") => {
            let token = single(form, "refresh_token")?.map(str::trim).unwrap_or("");
            if token.is_empty() {
                return Err(bad("invalid_request", "refresh_token is missing"));
            }
            GrantType::RefreshToken(token.to_string())
        }
        Some("authorization_code") => {
            if single(form, "code")?.is_none_or(str::is_empty) {
                return Err(bad("invalid_request", "code is missing"));
            }
            GrantType::AuthorizationCode
        }
        Some(DEVICE_CODE_GRANT) => {
            if single(form, "device_code")?.is_none_or(str::is_empty) {
                return Err(bad("invalid_request", "device_code is missing"));
            }
            GrantType::DeviceCode
        }
        Some(_) => {
            return Err(bad(
                "unsupported_grant_type",
                "grant_type must be authorization_code, refresh_token or device_code",
            ))
        }
    };
    Ok(TokenRequest { grant_type, client })
}

/// RFC 6749 §5.1: the successful answer. `expires_in` is what the token
/// really has left; `refresh_token` only where the client must store one
/// (a new grant's authid, or a v2 authid that changed).
pub fn token_response(access_token: &str, expires_in: i64, refresh_token: Option<&str>) -> Value {
    let mut v = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in.max(0),
    });
    if let Some(rt) = refresh_token {
        v["refresh_token"] = rt.into();
    }
    v
}

/// The refresh token to send back for `presented` when the token service
/// names `next` as the one to present next time: only a changed one.
pub fn changed_refresh_token<'a>(presented: &str, next: Option<&'a str>) -> Option<&'a str> {
    next.filter(|n| *n != presented)
}

/// Headers every front-door answer carries beside the usual ones
/// (`Cache-Control: no-store` is on every response): RFC 6749 §5.1.
pub const PRAGMA: (&str, &str) = ("Pragma", "no-cache");

/// Seconds a client should wait after a transient failure.
pub const RETRY_AFTER_TRANSIENT: u32 = 5;

/// An error as RFC 6749 §5.2 (and RFC 7009 §2.2.1, RFC 8628 §3.5) answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    /// The registered `error` code.
    pub error: &'static str,
    pub description: String,
    pub retry_after: Option<u32>,
    /// A 401 `invalid_client` carries `WWW-Authenticate: Basic` (§5.2).
    pub basic_challenge: bool,
    /// §5.2 `error_uri`: "a human-readable web page with information about
    /// the error": the re-authorization page, for a grant that needs one.
    pub error_uri: Option<String>,
}

/// RFC 6749 §5.2 and RFC 8628 §3.5 codes a handler may name directly in
/// `BrokerError::BadRequest { code, .. }`.
const REGISTERED_400: &[&str] = &[
    "invalid_request",
    "invalid_grant",
    "unsupported_grant_type",
    "invalid_scope",
    "unauthorized_client",
    "authorization_pending",
    "slow_down",
    "access_denied",
    "expired_token",
    "unsupported_token_type",
];

/// Maps a broker error to its front-door answer.
pub fn error_for(e: &BrokerError) -> OAuthError {
    use BrokerError::*;
    let (status, error, description, retry_after, basic_challenge) = match e {
        BadRequest { code, what } if REGISTERED_400.contains(code) => {
            (400, *code, (*what).to_string(), None, false)
        }
        BadRequest {
            code: "invalid_client",
            what,
        } => (401, "invalid_client", (*what).to_string(), None, true),
        Forbidden { .. } | AdminKeyRequired => (401, "invalid_client", e.reason(), None, true),
        BadRequest { .. } | MissingAuthId | Conflict { .. } => {
            (400, "invalid_request", e.reason(), None, false)
        }
        // Permanent: the client must stop retrying and log in again.
        MalformedAuthId
        | UnknownAuthId
        | ReauthorizationRequired { .. }
        | AuthIdReplaced
        | UnknownProvider => (400, "invalid_grant", e.reason(), None, false),
        InvalidLoginState => (400, "invalid_grant", e.reason(), None, false),
        LoginDenied => (400, "access_denied", e.reason(), None, false),
        RateLimited { retry_after } => (
            429,
            "temporarily_unavailable",
            e.reason(),
            Some(*retry_after),
            false,
        ),
        // Not a token request at all: the router's own answer, in this shape.
        NotFound | MethodNotAllowed => (e.status(), e.code(), e.reason(), None, false),
        Misconfigured { .. } | ProviderRejectedClient => {
            (500, "server_error", e.reason(), None, false)
        }
        ProviderFailed
        | ProviderTimeout
        | RefreshPending
        | StorageUnavailable { .. }
        | Internal { .. } => (
            e.status(),
            "temporarily_unavailable",
            e.reason(),
            Some(RETRY_AFTER_TRANSIENT),
            false,
        ),
    };
    let error_uri = match e {
        ReauthorizationRequired { broker_url } => Some(broker_url.clone()),
        _ => None,
    };
    OAuthError {
        status,
        error,
        description,
        retry_after,
        basic_challenge,
        error_uri,
    }
}

impl OAuthError {
    /// The §5.2 JSON body.
    pub fn body(&self) -> String {
        let mut body = json!({ "error": self.error, "error_description": self.description });
        if let Some(uri) = &self.error_uri {
            body["error_uri"] = uri.as_str().into();
        }
        body.to_string()
    }

    /// The headers of the answer beside the usual ones: `Pragma`, the broker's
    /// `X-Error-Code`/`X-Reason` (from the broker error `e`), `Retry-After`,
    /// and the Basic challenge of a 401.
    pub fn headers(&self, e: &BrokerError) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (PRAGMA.0, PRAGMA.1.to_string()),
            ("X-Error-Code", e.code().to_string()),
            ("X-Reason", e.reason()),
        ];
        if let Some(secs) = self.retry_after {
            h.push(("Retry-After", secs.to_string()));
        }
        if self.basic_challenge {
            h.push((
                "WWW-Authenticate",
                r#"Basic realm="oauth-broker""#.to_string(),
            ));
        }
        h
    }
}

/// Whether a failed refresh cost a provider call, so that repeating the same
/// request at once would cost another: the failures [`FailureMemo`] keeps.
/// (A v1 grant's `invalid_grant` is remembered in D1 already; a v2 authid's
/// is not, and a provider 5xx or timeout is remembered nowhere.)
pub fn cost_an_upstream_call(e: &BrokerError) -> bool {
    matches!(
        e,
        BrokerError::ProviderFailed
            | BrokerError::ProviderTimeout
            | BrokerError::ReauthorizationRequired { .. }
    )
}

/// How long a remembered failure answers again: long enough for
/// golang.org/x/oauth2's immediate second attempt with the other auth style,
/// shorter than [`RETRY_AFTER_TRANSIENT`] so a client that waits as told
/// reaches the provider again.
pub const MEMO_MS: u64 = 3_000;
/// At most this many failures are remembered (oldest dropped first).
pub const MEMO_CAP: usize = 256;

/// Recent failed refreshes, keyed by a hash of the refresh token (never the
/// token): "one failure is one answer". Held per isolate by the shell; the
/// memory itself is [`Memo`], this is the token endpoint's rule for it.
pub struct FailureMemo(Memo);

impl Default for FailureMemo {
    fn default() -> FailureMemo {
        FailureMemo(Memo::new(MEMO_CAP))
    }
}

impl FailureMemo {
    /// The failure remembered for `key` at `now_ms`, if still fresh.
    pub fn recall(&mut self, key: &str, now_ms: u64) -> Option<BrokerError> {
        self.0.recall(key, now_ms)
    }

    /// Remembers `e` for `key`, for [`MEMO_MS`], when it cost an upstream call.
    pub fn remember(&mut self, key: String, e: &BrokerError, now_ms: u64) {
        if cost_an_upstream_call(e) {
            self.0.remember(key, e, now_ms, now_ms + MEMO_MS);
        }
    }
}

/// The issuer identifier (RFC 8414 §2) of the broker as a client reached it:
/// the origin, followed by the `/k/<key>` prefix (as the request spelled it)
/// when the client came through one. A client that discovered the metadata
/// through a keyed location knows the issuer `<origin>/k/<key>` (RFC 8414
/// §3.1 builds that location from it, and §3.3 wants the document's `issuer`
/// to be the same), so every answer it checks against its issuer (the
/// metadata, RFC 9207's `iss`) names that one.
pub fn issuer(origin: &str, base: &str) -> String {
    format!("{}{base}", origin.trim_end_matches('/'))
}

/// RFC 8414 §2: the authorization server metadata. `issuer` is
/// [`issuer`]`(origin, base)` and every endpoint starts with it, so the key of
/// a `/k/<key>` prefix the metadata was asked through (`base`, or empty)
/// rides along. Authorization responses carry `iss` (RFC 9207 §3).
pub fn metadata(origin: &str, base: &str) -> Value {
    let issuer = issuer(origin, base);
    let at = |path: &str| format!("{issuer}{path}");
    json!({
        "issuer": issuer,
        "authorization_endpoint": at(AUTHORIZATION_PATH),
        "token_endpoint": at(TOKEN_PATH),
        "device_authorization_endpoint": at(DEVICE_AUTHORIZATION_PATH),
        "revocation_endpoint": at(REVOCATION_PATH),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    })
}

/// RFC 7009 §2.1: the token a revocation request names (`token_type_hint` is
/// only a hint and is ignored: the broker has one kind of token).
pub fn revocation_token(form: &Params) -> Result<&str, BrokerError> {
    match single(form, "token")?.map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(bad("invalid_request", "token is missing")),
    }
}

/// RFC 7009 §2.2: an invalid, unknown or already revoked token is answered
/// 200 like a revoked one (the client's goal is reached); other failures stay.
pub fn revocation_outcome(r: Result<(), BrokerError>) -> Result<(), BrokerError> {
    match r {
        Err(
            BrokerError::UnknownAuthId | BrokerError::MalformedAuthId | BrokerError::MissingAuthId,
        ) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_params;

    fn basic(id: &str, secret: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        format!("Basic {b}")
    }

    #[test]
    fn basic_credentials_are_form_urldecoded_per_rfc_6749_2_3_1() {
        // golang.org/x/oauth2 internal/token.go newTokenRequest: url.QueryEscape each half.
        let h = basic("box.com", "k%3Aey+with%2Bplus%25");
        let (id, secret) = parse_basic(&h).unwrap().unwrap();
        assert_eq!(id, "box.com");
        assert_eq!(secret, "k:ey with+plus%");
        assert!(parse_basic("Bearer abc").is_none(), "not client auth");
        assert_eq!(parse_basic("Basic !!!"), Some(Err(BAD_BASIC)));
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("nocolon")
        );
        assert_eq!(parse_basic(&no_colon), Some(Err(BAD_BASIC)));
    }

    #[test]
    fn client_credentials_come_by_basic_or_body_and_must_agree_when_both() {
        let form = parse_params("grant_type=refresh_token&client_id=demo&client_secret=s3");
        let c = client_auth(None, &form).unwrap();
        assert_eq!(
            (c.id.as_deref(), c.secret.as_deref(), c.basic),
            (Some("demo"), Some("s3"), false)
        );
        let c = client_auth(Some(&basic("demo", "s3")), &parse_params("client_id=demo")).unwrap();
        assert_eq!(
            (c.id.as_deref(), c.secret.as_deref(), c.basic),
            (Some("demo"), Some("s3"), true)
        );
        // x/oauth2 sends Basic with an empty secret for a public client.
        let c = client_auth(Some(&basic("demo", "")), &Params::new()).unwrap();
        assert_eq!(c.secret, None);
        let e =
            client_auth(Some(&basic("demo", "a")), &parse_params("client_secret=b")).unwrap_err();
        assert_eq!(error_for(&e).error, "invalid_request");
        assert!(!format!("{c:?}").contains("s3"));
    }

    #[test]
    fn grant_type_dispatch_and_missing_parameters() {
        let p = |s: &str| parse_token_request(None, &parse_params(s));
        assert!(
            matches!(p("grant_type=refresh_token&refresh_token=x").unwrap().grant_type, GrantType::RefreshToken(t) if t == "x")
        );
        assert!(matches!(
            p("grant_type=authorization_code&code=c")
                .unwrap()
                .grant_type,
            GrantType::AuthorizationCode
        ));
        let dev = format!(
            "grant_type={}&device_code=d",
            DEVICE_CODE_GRANT.replace(':', "%3A")
        );
        assert!(matches!(p(&dev).unwrap().grant_type, GrantType::DeviceCode));
        for (body, code) in [
            ("", "invalid_request"),
            ("grant_type=refresh_token", "invalid_request"),
            ("grant_type=refresh_token&refresh_token=", "invalid_request"),
            ("grant_type=authorization_code", "invalid_request"),
            ("grant_type=password&username=u", "unsupported_grant_type"),
            ("grant_type=client_credentials", "unsupported_grant_type"),
            (
                "grant_type=refresh_token&refresh_token=a&refresh_token=b",
                "invalid_request",
            ),
        ] {
            let e = p(body).unwrap_err();
            let o = error_for(&e);
            assert_eq!((o.status, o.error), (400, code), "{body}");
        }
    }

    #[test]
    fn permanent_failures_are_400_invalid_grant_so_clients_stop_retrying() {
        // rclone lib/oauthutil/oauthutil.go: only a 400/401 RetrieveError stops its retries.
        for e in [
            BrokerError::UnknownAuthId,
            BrokerError::MalformedAuthId,
            BrokerError::ReauthorizationRequired {
                broker_url: "https://b/".into(),
            },
        ] {
            let o = error_for(&e);
            assert_eq!(
                (o.status, o.error, o.retry_after),
                (400, "invalid_grant", None),
                "{e:?}"
            );
            assert!(o.headers(&e).iter().all(|(n, _)| *n != "WWW-Authenticate"));
        }
    }

    #[test]
    fn a_grant_to_re_authorize_names_the_page_in_error_uri() {
        let e = BrokerError::ReauthorizationRequired {
            broker_url: "https://b/reauthorize".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&error_for(&e).body()).unwrap();
        assert_eq!(v["error_uri"], "https://b/reauthorize");
        let other: serde_json::Value =
            serde_json::from_str(&error_for(&BrokerError::UnknownAuthId).body()).unwrap();
        assert!(other.get("error_uri").is_none());
    }

    #[test]
    fn transient_failures_are_5xx_temporarily_unavailable_with_retry_after() {
        for e in [
            BrokerError::ProviderFailed,
            BrokerError::ProviderTimeout,
            BrokerError::RefreshPending,
            BrokerError::storage("d1"),
        ] {
            let o = error_for(&e);
            assert!(o.status >= 500, "{e:?}");
            assert_eq!(o.error, "temporarily_unavailable");
            let h = o.headers(&e);
            assert!(h.contains(&("Retry-After", RETRY_AFTER_TRANSIENT.to_string())));
            assert!(!o.body().contains("d1"), "no cause in the body");
        }
        let rl = BrokerError::RateLimited { retry_after: 60 };
        let o = error_for(&rl);
        assert_eq!((o.status, o.retry_after), (429, Some(60)));
    }

    #[test]
    fn a_wrong_gate_key_is_401_invalid_client_with_a_basic_challenge() {
        for e in [INVALID_CLIENT, crate::access::KEY_REQUIRED, BAD_BASIC] {
            let o = error_for(&e);
            assert_eq!((o.status, o.error), (401, "invalid_client"));
            let h = o.headers(&e);
            assert!(h.contains(&("WWW-Authenticate", r#"Basic realm="oauth-broker""#.into())));
            assert!(h.contains(&("Pragma", "no-cache".into())));
        }
    }

    #[test]
    fn device_polling_answers_keep_their_registered_codes() {
        for code in [
            "authorization_pending",
            "slow_down",
            "access_denied",
            "expired_token",
            "invalid_grant",
        ] {
            let o = error_for(&bad(code, "x"));
            assert_eq!((o.status, o.error), (400, code));
            let v: Value = serde_json::from_str(&o.body()).unwrap();
            assert_eq!(v["error"], code);
            assert_eq!(v["error_description"], "x");
        }
    }

    #[test]
    fn the_answer_names_a_refresh_token_only_when_it_changed() {
        let v = token_response("at", 3599, None);
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["expires_in"], 3599);
        assert!(v.get("refresh_token").is_none());
        assert_eq!(token_response("at", -5, Some("r"))["expires_in"], 0);
        assert_eq!(changed_refresh_token("a", Some("a")), None);
        assert_eq!(changed_refresh_token("a", Some("b")), Some("b"));
        assert_eq!(changed_refresh_token("a", None), None);
    }

    #[test]
    fn a_failure_that_cost_an_upstream_call_answers_the_immediate_repeat() {
        let mut m = FailureMemo::default();
        m.remember("k".into(), &BrokerError::ProviderFailed, 1_000);
        m.remember("p".into(), &BrokerError::RefreshPending, 1_000);
        m.remember("u".into(), &BrokerError::UnknownAuthId, 1_000);
        assert_eq!(m.recall("k", 1_500), Some(BrokerError::ProviderFailed));
        assert_eq!(m.recall("p", 1_500), None, "no upstream call: not kept");
        assert_eq!(m.recall("u", 1_500), None);
        assert_eq!(
            m.recall("k", 1_000 + MEMO_MS),
            None,
            "forgotten after MEMO_MS"
        );
        for i in 0..(MEMO_CAP + 10) {
            m.remember(
                format!("x{i}"),
                &BrokerError::ProviderTimeout,
                2_000 + i as u64,
            );
        }
        assert!(m.recall("x0", 2_100).is_none(), "oldest dropped first");
        assert!(m.recall(&format!("x{}", MEMO_CAP + 9), 2_100).is_some());
    }

    #[test]
    fn metadata_names_every_endpoint_under_the_origin() {
        let v = metadata("https://b.example", "");
        assert_eq!(v["issuer"], "https://b.example");
        assert_eq!(v["token_endpoint"], "https://b.example/oauth/token");
        assert_eq!(
            v["authorization_endpoint"],
            "https://b.example/oauth/authorize"
        );
        assert_eq!(
            v["device_authorization_endpoint"],
            "https://b.example/oauth/device_authorization"
        );
        assert_eq!(v["revocation_endpoint"], "https://b.example/oauth/revoke");
        assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(v["response_types_supported"], json!(["code"]));
        assert_eq!(v["authorization_response_iss_parameter_supported"], true);
        let keyed = metadata("https://b.example", "/k/abc");
        assert_eq!(
            keyed["token_endpoint"],
            "https://b.example/k/abc/oauth/token"
        );
    }

    #[test]
    fn a_keyed_metadata_documents_issuer_is_the_keyed_base_its_endpoints_start_with() {
        // RFC 8414 §3.1: issuer <origin>/k/abc is discovered at
        // <origin>/.well-known/oauth-authorization-server/k/abc; §3.3: the
        // document names that issuer.
        let keyed = metadata("https://b.example", "/k/a%2Bb");
        assert_eq!(keyed["issuer"], "https://b.example/k/a%2Bb");
        for endpoint in [
            "authorization_endpoint",
            "token_endpoint",
            "device_authorization_endpoint",
            "revocation_endpoint",
        ] {
            let url = keyed[endpoint].as_str().unwrap_or_default();
            assert!(url.starts_with("https://b.example/k/a%2Bb/oauth/"), "{url}");
        }
        assert_eq!(issuer("https://b.example/", ""), "https://b.example");
        assert_eq!(issuer("https://b.example", "/k/x"), "https://b.example/k/x");
    }

    #[test]
    fn revoking_an_unknown_or_malformed_token_is_a_success() {
        assert_eq!(revocation_outcome(Err(BrokerError::UnknownAuthId)), Ok(()));
        assert_eq!(
            revocation_outcome(Err(BrokerError::MalformedAuthId)),
            Ok(())
        );
        assert!(revocation_outcome(Err(BrokerError::storage("x"))).is_err());
        assert!(revocation_token(&parse_params("token=")).is_err());
        assert_eq!(
            revocation_token(&parse_params("token=a&token_type_hint=refresh_token")),
            Ok("a")
        );
    }
}
