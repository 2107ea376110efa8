//! One error type for the broker, mapped once to HTTP status, stable `error`
//! code and the human `X-Reason` text.
//!
//! What Duplicati does with an answer (duplicati/duplicati@66cfb242, the same
//! code in v2.2.0.3 stable; paths under `Duplicati/Library/`), which is why the
//! statuses are what they are:
//! - `Backend/OAuthHelper/OAuthHelperHttpClient.cs:166-178`: a 503 with
//!   `X-Reason` fails the backup at once and shows the reason with the login
//!   URL. Only the user can fix what a 503 reports.
//! - `:142-151,181,189`: any other 4xx is retried once, any other 5xx five times
//!   with backoff (1+2+4+8+16 s); then `:183` hands the answer to the backend's
//!   `AttemptParseAndThrowExceptionAsync`, and only if that does not throw does
//!   `:184-185` show `X-Reason`.
//! - Box (`Backend/Box/BoxBackend.cs:78-95`) parses the body as
//!   `{status, code, message}` (`Backend/Box/Model/ErrorResponse.cs:9-12`) and
//!   shows `Box.com ErrorResponse: {status} - {code}: {message}`
//!   (`Backend/Box/Model/BoxException.cs:22`), so every JSON body carries those
//!   three too ([`BrokerError::json_body`]).
//! - Dropbox (`Backend/Dropbox/DropboxHelper.cs:239-252`) turns a 404 or 409
//!   into "folder missing" and a 401 into an authorization failure showing the
//!   body and the login URL, so an unknown authid is a 401.
//!
//! No variant carries a token, an authid, a code or a raw provider body, so an
//! error can always be logged and echoed safely.

use serde_json::json;

/// The page a user re-authorizes a stored grant on (`crate::reauthorize`):
/// every "re-authorize" answer for a stored grant names it.
pub const REAUTHORIZE_PATH: &str = "/reauthorize";

/// Everything a request can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// No authid in header, form or query.
    MissingAuthId,
    /// The authid does not have the v1 or v2 shape.
    MalformedAuthId,
    /// No grant for this authid, or the authid's secret does not open it, or it
    /// was revoked. Deliberately one variant: unknown and wrong must be
    /// indistinguishable. 401, never 404: Duplicati's Dropbox backend reads a 404
    /// as "folder missing" (`Backend/Dropbox/DropboxHelper.cs:241-246`).
    UnknownAuthId,
    /// The provider rejected the grant (`invalid_grant`); the user must log in again.
    ReauthorizationRequired { broker_url: String },
    /// The authid was replaced by its successor, which has been used (Akeeba's
    /// refresh URL hands out a new authid on every refresh): permanent; the
    /// user must act, so a 503 with the reason, like a re-authorization.
    AuthIdReplaced,
    /// The provider answered with an error status or an unusable body.
    ProviderFailed,
    /// The provider refused the broker's own client credentials
    /// (`invalid_client`): the operator's client id or secret is wrong or
    /// expired. No retry can help and the user cannot fix it, so a 503 whose
    /// reason says to tell the operator (Duplicati shows it at once).
    ProviderRejectedClient,
    /// The provider did not answer in time.
    ProviderTimeout,
    /// Another request's refresh of this grant did not finish in time; retryable.
    RefreshPending,
    /// D1 failed; retryable, so a 500 and never a 503, which Duplicati treats
    /// as final (`Backend/OAuthHelper/OAuthHelperHttpClient.cs:166-178`); a 500
    /// is retried five times with backoff (`:181,189`). `cause` is for the log
    /// only (see [`BrokerError::cause`]).
    StorageUnavailable { cause: String },
    /// The provider id is not in the catalogue or not configured.
    UnknownProvider,
    /// A request parameter is missing or invalid (`what` is a fixed description, never input).
    BadRequest {
        code: &'static str,
        what: &'static str,
    },
    /// The login state is missing, used, expired or not bound to this browser.
    InvalidLoginState,
    /// The provider redirected back with `error=` (e.g. the user denied access).
    LoginDenied,
    /// The caller lacks a required key (`code`/`what` are fixed strings).
    Forbidden {
        code: &'static str,
        what: &'static str,
    },
    /// The request conflicts with what is stored.
    Conflict {
        code: &'static str,
        what: &'static str,
    },
    /// Over a rate limit; retry after this many seconds.
    RateLimited { retry_after: u32 },
    /// No route.
    NotFound,
    /// Route exists, method does not.
    MethodNotAllowed,
    /// An operator route (`/admin/status`) without the right `X-APIKey`.
    AdminKeyRequired,
    /// The operator's configuration is broken (bad `OAUTH_PROVIDERS`, missing secret).
    Misconfigured { what: &'static str },
    /// Something that should not happen (no randomness, a runtime error). Retryable.
    /// `cause` is for the log only (see [`BrokerError::cause`]).
    Internal { cause: String },
}

impl BrokerError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        use BrokerError::*;
        match self {
            MissingAuthId | MalformedAuthId | BadRequest { .. } | InvalidLoginState => 400,
            LoginDenied | Forbidden { .. } => 403,
            Conflict { .. } => 409,
            UnknownAuthId | AdminKeyRequired => 401,
            RateLimited { .. } => 429,
            UnknownProvider | NotFound => 404,
            MethodNotAllowed => 405,
            Misconfigured { .. } | Internal { .. } | StorageUnavailable { .. } => 500,
            ProviderFailed => 502,
            ReauthorizationRequired { .. } | AuthIdReplaced | ProviderRejectedClient => 503,
            ProviderTimeout | RefreshPending => 504,
        }
    }

    /// Stable machine-readable code for the JSON `error` field.
    pub fn code(&self) -> &'static str {
        use BrokerError::*;
        match self {
            MissingAuthId => "missing_authid",
            MalformedAuthId => "malformed_authid",
            UnknownAuthId => "unknown_authid",
            ReauthorizationRequired { .. } => "reauthorization_required",
            AuthIdReplaced => "authid_replaced",
            ProviderFailed => "provider_error",
            ProviderRejectedClient => "provider_misconfigured",
            ProviderTimeout => "provider_timeout",
            RefreshPending => "refresh_pending",
            StorageUnavailable { .. } => "storage_unavailable",
            UnknownProvider => "unknown_provider",
            BadRequest { code, .. } | Forbidden { code, .. } | Conflict { code, .. } => code,
            InvalidLoginState => "invalid_state",
            LoginDenied => "access_denied",
            RateLimited { .. } => "rate_limited",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Misconfigured { .. } => "server_misconfigured",
            AdminKeyRequired => "invalid_api_key",
            Internal { .. } => "internal_error",
        }
    }

    /// Human text for `X-Reason` and `error_description`. Single line, ASCII.
    pub fn reason(&self) -> String {
        use BrokerError::*;
        match self {
            MissingAuthId => "No authid was sent (use the X-AuthID header)".into(),
            MalformedAuthId => "The authid is malformed; copy it again from the broker".into(),
            UnknownAuthId => "Unknown or wrong authid; it may have been revoked".into(),
            ReauthorizationRequired { broker_url } if broker_url.ends_with(REAUTHORIZE_PATH) => {
                format!(
                    "The provider no longer accepts this authorization; re-authorize this \
                     authid at {broker_url} (log in again as the same account, and every \
                     backup job keeps working with the same authid)"
                )
            }
            ReauthorizationRequired { broker_url } => format!(
                "The provider no longer accepts this authorization; log in again at \
                 {broker_url} for a new authid"
            ),
            AuthIdReplaced => "This refresh token was replaced by the newer one its last answer \
                carried, which has been used since; each Akeeba Backup site must run the OAuth2 \
                Helper itself (two sites cannot share one)"
                .into(),
            ProviderFailed => {
                "The storage provider failed to issue a token; try again later".into()
            }
            ProviderRejectedClient => "The storage provider refused this broker's app \
                credentials: the broker is misconfigured; tell its operator (trying again will \
                not help, and your authorization is kept)"
                .into(),
            ProviderTimeout => {
                "The storage provider did not answer in time; try again later".into()
            }
            RefreshPending => {
                "Another request is refreshing this authorization; try again shortly".into()
            }
            StorageUnavailable { .. } => {
                "The broker's database is unavailable; try again later".into()
            }
            UnknownProvider => "Unknown or unconfigured provider".into(),
            BadRequest { what, .. } => format!("Bad request: {what}"),
            Forbidden { what, .. } => format!("Forbidden: {what}"),
            Conflict { what, .. } => format!("Conflict: {what}"),
            InvalidLoginState => {
                "This login link is invalid, already used or expired; start the login again".into()
            }
            LoginDenied => "The provider reported that access was not granted".into(),
            RateLimited { retry_after } => {
                format!("Too many requests; retry after {retry_after} seconds")
            }
            NotFound => "No such route".into(),
            MethodNotAllowed => "Method not allowed on this route".into(),
            Misconfigured { what } => format!("The broker is misconfigured: {what}"),
            AdminKeyRequired => "Missing or wrong X-APIKey (the broker's ADMIN_API_KEY)".into(),
            Internal { .. } => "Internal error; try again later".into(),
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 9110 §15.5.2 requires one).
    /// Its scheme names the header the credential travels in: the broker reads
    /// the authid from `X-AuthID`, not from `Authorization`, so `Bearer` (RFC
    /// 6750) would promise something it does not accept. Harmless to Duplicati:
    /// its `HttpClient` has no credentials (`Utility/HttpClientHelper.cs:55-58`),
    /// so .NET answers no challenge, and a browser shows the page of an unknown
    /// scheme instead of prompting.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            BrokerError::AdminKeyRequired => Some(r#"X-APIKey realm="oauth-broker""#),
            e => (e.status() == 401).then_some(r#"X-AuthID realm="oauth-broker""#),
        }
    }

    /// Seconds for `Retry-After`, where the error has one.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            BrokerError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// An internal failure (no randomness, a runtime call that failed).
    pub fn internal(cause: impl Into<String>) -> BrokerError {
        BrokerError::Internal {
            cause: cause.into(),
        }
    }

    /// D1 failed doing `cause`.
    pub fn storage(cause: impl Into<String>) -> BrokerError {
        BrokerError::StorageUnavailable {
            cause: cause.into(),
        }
    }

    /// What the operator's log says about this error: for failures inside the
    /// broker (5xx) its non-secret cause, `None` for a client's mistake. Never
    /// part of a response: a client learns the `code` and `reason` only.
    pub fn cause(&self) -> Option<String> {
        use BrokerError::*;
        match self {
            StorageUnavailable { cause } | Internal { cause } => Some(cause.clone()),
            Misconfigured { what } => Some((*what).to_string()),
            ProviderRejectedClient => Some(
                "the provider refused the broker's client credentials: check the provider's \
                 CLIENT_ID_<ID> and CLIENT_SECRET_<ID> (docs/providers/)"
                    .into(),
            ),
            e if e.status() >= 500 => Some(e.code().to_string()),
            _ => None,
        }
    }

    /// A runtime error's text as one short log line: the line that names the
    /// error (JS errors arrive with a stack and a debug dump around them).
    pub fn one_line(text: &str) -> String {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.contains("Error:"))
            .or_else(|| text.lines().map(str::trim).find(|l| !l.is_empty()))
            .unwrap_or("");
        let line = line.trim_start_matches("cause: JsValue(");
        line.chars().take(200).collect()
    }

    /// The JSON error body: RFC 6749 §5.2's `error` and `error_description`,
    /// and the same facts as Box's error object, which Duplicati's Box backend
    /// parses instead (`Backend/Box/BoxBackend.cs:88-94`,
    /// `Backend/Box/Model/ErrorResponse.cs:9-12`): `status` the HTTP status as
    /// a JSON number (an `int` there), `code` the stable code, `message` the
    /// reason. Without them it shows `Box.com ErrorResponse: 0 - : `.
    pub fn json_body(&self) -> String {
        json!({
            "error": self.code(),
            "error_description": self.reason(),
            "status": self.status(),
            "code": self.code(),
            "message": self.reason(),
        })
        .to_string()
    }
}

/// `POST /import` with an `X-AuthID` whose shard tag (`s<k>:`, `crate::authid`)
/// names a shard `D1_SHARDS` does not list: the grant would have nowhere to go.
/// (Presented anywhere else, such an authid is simply unknown: 401.)
pub const UNKNOWN_SHARD: BrokerError = BrokerError::BadRequest {
    code: "unknown_shard",
    what: "X-AuthID names a shard not in D1_SHARDS",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_spec() {
        assert_eq!(BrokerError::MissingAuthId.status(), 400);
        assert_eq!(BrokerError::MalformedAuthId.status(), 400);
        let reauth = BrokerError::ReauthorizationRequired {
            broker_url: "https://b.example/".into(),
        };
        assert_eq!(reauth.status(), 503);
        assert!(reauth
            .reason()
            .contains("log in again at https://b.example/ for a new authid"));
        let in_place = BrokerError::ReauthorizationRequired {
            broker_url: "https://b.example/reauthorize".into(),
        };
        assert_eq!(in_place.status(), 503);
        assert!(in_place
            .reason()
            .contains("re-authorize this authid at https://b.example/reauthorize"));
        assert_eq!(BrokerError::ProviderFailed.status(), 502);
        assert_eq!(BrokerError::ProviderTimeout.status(), 504);
    }

    #[test]
    fn importing_under_a_shard_the_broker_lacks_is_a_400_unknown_shard() {
        assert_eq!(
            (UNKNOWN_SHARD.status(), UNKNOWN_SHARD.code()),
            (400, "unknown_shard")
        );
    }

    #[test]
    fn an_unknown_wrong_or_revoked_authid_is_a_401_never_a_404() {
        // A 404 is "folder missing" to Duplicati's Dropbox backend.
        let e = BrokerError::UnknownAuthId;
        assert_eq!((e.status(), e.code()), (401, "unknown_authid"));
    }

    #[test]
    fn a_401_carries_a_challenge_and_nothing_else_does() {
        assert_eq!(
            BrokerError::UnknownAuthId.www_authenticate(),
            Some(r#"X-AuthID realm="oauth-broker""#)
        );
        for e in [
            BrokerError::MissingAuthId,
            BrokerError::Forbidden {
                code: "f",
                what: "x",
            },
            BrokerError::storage("d1"),
            BrokerError::NotFound,
        ] {
            assert_eq!(e.www_authenticate(), None, "{e:?}");
        }
    }

    #[test]
    fn a_storage_fault_is_a_retryable_500_never_the_final_503() {
        let e = BrokerError::storage("d1 find_grant: timeout");
        assert_eq!((e.status(), e.code()), (500, "storage_unavailable"));
        // Only what the user must act on is a 503.
        for e in [
            BrokerError::storage("x"),
            BrokerError::internal("x"),
            BrokerError::ProviderFailed,
            BrokerError::ProviderTimeout,
            BrokerError::RefreshPending,
            BrokerError::Misconfigured { what: "x" },
        ] {
            assert_ne!(e.status(), 503, "{e:?}");
        }
    }

    #[test]
    fn an_internal_cause_reaches_the_log_but_never_the_client() {
        let e = BrokerError::storage("d1 find_grant: no such table: grants");
        assert_eq!(
            e.cause().as_deref(),
            Some("d1 find_grant: no such table: grants")
        );
        assert!(!e.json_body().contains("no such table"));
        assert!(!e.reason().contains("no such table"));
        assert_eq!(BrokerError::MissingAuthId.cause(), None);
        assert_eq!(
            BrokerError::ProviderTimeout.cause().as_deref(),
            Some("provider_timeout")
        );
    }

    #[test]
    fn a_runtime_errors_text_becomes_one_log_line() {
        let d1 = "D1: D1Error {\n\n      cause: JsValue(Error: no such table: grants: SQLITE_ERROR\n      \
                  Error: no such table: grants: SQLITE_ERROR\n          at D1Database._send (x:1:2),\n  })";
        assert_eq!(
            BrokerError::one_line(d1),
            "Error: no such table: grants: SQLITE_ERROR"
        );
        assert_eq!(
            BrokerError::one_line("\n plain failure \nmore"),
            "plain failure"
        );
        assert_eq!(BrokerError::one_line(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn json_body_has_the_rfc_6749_pair_and_boxs_status_code_message() {
        for e in [
            BrokerError::UnknownAuthId,
            BrokerError::storage("d1"),
            BrokerError::RateLimited { retry_after: 7 },
        ] {
            let v: serde_json::Value = serde_json::from_str(&e.json_body()).unwrap();
            assert_eq!(v["error"], e.code());
            assert_eq!(v["error_description"], e.reason());
            // Box's ErrorResponse reads `status` into an int: a JSON number.
            assert_eq!(v["status"].as_u64(), Some(u64::from(e.status())));
            assert_eq!(v["code"], e.code());
            assert_eq!(v["message"], e.reason());
            assert_eq!(v.as_object().map(|o| o.len()), Some(5));
        }
    }

    #[test]
    fn reasons_are_single_line_header_safe() {
        let all = [
            BrokerError::MissingAuthId,
            BrokerError::MalformedAuthId,
            BrokerError::UnknownAuthId,
            BrokerError::ReauthorizationRequired {
                broker_url: "https://x/".into(),
            },
            BrokerError::ProviderFailed,
            BrokerError::ProviderTimeout,
            BrokerError::storage("d1"),
            BrokerError::RefreshPending,
            BrokerError::UnknownProvider,
            BrokerError::BadRequest {
                code: "bad",
                what: "x",
            },
            BrokerError::InvalidLoginState,
            BrokerError::Forbidden {
                code: "f",
                what: "x",
            },
            BrokerError::Conflict {
                code: "c",
                what: "x",
            },
            BrokerError::LoginDenied,
            BrokerError::RateLimited { retry_after: 60 },
            BrokerError::NotFound,
            BrokerError::MethodNotAllowed,
            BrokerError::Misconfigured { what: "x" },
            BrokerError::internal("x"),
        ];
        for e in all {
            let r = e.reason();
            assert!(
                !r.is_empty() && r.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{r}"
            );
            assert!(!e.code().is_empty());
        }
    }
}
