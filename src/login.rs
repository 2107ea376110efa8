//! The browser login: state, browser binding, PKCE and the callback checks.
//!
//! - `state` (RFC 6749 §10.12) is 256 random bits; only its SHA-256 is stored
//!   (with a 10-minute expiry) and the row is deleted when used, so it is single use.
//! - The browser is bound by a `__Host-` cookie holding another 256 random bits;
//!   only its SHA-256 is stored. A callback must present the cookie of the browser
//!   that started the login (login CSRF protection, RFC 9700 §4.7).
//! - Check first, consume after: the callback reads the login without deleting
//!   it, runs [`verify_callback`], and only then deletes the row on the condition
//!   that it is still bound to the presented cookie. Someone who learned a
//!   `state` (it travels in URLs) but lacks the cookie consumes nothing, so they
//!   cannot cancel the user's login; of two callbacks from the right browser,
//!   the delete lets exactly one through.
//! - A login that will hand its authid to Duplicati's old UI asks the provider
//!   for consent ([`crate::providers::Provider::authorize_params`]).
//! - The PKCE verifier (RFC 7636) is derived, not stored
//!   ([`PkceVerifier::derive`] from the cookie value and the state).
//!   The provider sees only the challenge and the state; the cookie value never
//!   leaves the browser and the broker, so neither a database dump nor an
//!   intercepted callback URL yields the verifier.

use serde::{Deserialize, Serialize};

use crate::cookie;
use crate::digest::sha256_hex;
use crate::error::BrokerError;
use crate::pkce::PkceVerifier;
use crate::providers::Provider;
use crate::random;
use crate::secret::{ct_eq, StateToken};

/// How long a started login may take.
pub const LOGIN_TTL_SECS: i64 = 600;

/// Name of the browser-binding cookie. `__Host-` forces Secure, Path=/ and no Domain.
pub const COOKIE_NAME: &str = "__Host-broker-login";

/// Storage form of a binding cookie (`login_states.binding_hash`).
pub fn binding_hash(cookie: &StateToken) -> String {
    sha256_hex(cookie.secret())
}

/// What a started login remembers (stored in `login_states`, keyed by the state hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub provider: String,
    pub binding_hash: String,
    /// 1 = stored grant, 2 = pass-through (v2) authid.
    pub token_version: u8,
    /// [`crate::handoff::token_hash`] of the `/fetch` token the login carried, if any.
    pub fetch_token_hash: Option<String>,
    pub expires_at: i64,
    /// What the callback does once the grant is kept.
    pub ending: LoginEnding,
}

/// How a login ends, once the callback has exchanged the code and kept the
/// grant: which door's page or redirect answers the browser. Every
/// door (Duplicati's pages, Akeeba's helper, the OAuth 2.0 authorization and
/// device endpoints) starts the same login and differs only here.
///
/// Stored as JSON in `login_states.ending` ([`LoginEnding::to_column`]); the
/// broker's own result page is stored as NULL, so rows written before the
/// column existed end as they always did. The row is plain text in D1 for at
/// most [`LOGIN_TTL_SECS`]: a variant that must remember a secret keeps only
/// its hash (or a sealed copy), never the value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginEnding {
    /// The broker's result page: the authid with a copy button, posted to
    /// Duplicati's new UI, or left for the old UI's hand-off.
    #[default]
    ResultPage,
    /// Akeeba Backup's helper page (`crate::akeeba`): the access token and a
    /// stored (v1) authid as the refresh token, for the profile of `engine`
    /// (an Akeeba engine slug: `dropbox`, `box`, `googledrive`, `onedrivebusiness`).
    Akeeba { engine: String },
    /// The OAuth 2.0 authorization endpoint (`crate::authorize`): a redirect
    /// to the client's validated `redirect_uri` with a one-time code. The
    /// redirect URI and the PKCE challenge are not secrets (the challenge is a
    /// hash); the client's `state` is sealed under a key from this login's
    /// browser-binding cookie ([`crate::seal::Pending::ClientState`]), which is
    /// stored only hashed, so the row alone does not reveal it.
    Authorize {
        redirect_uri: String,
        code_challenge: Option<String>,
        state: Option<crate::seal::Sealed>,
        /// The `/k/<key>` prefix the request came through, when it came
        /// through one: the redirect's `iss` is the issuer the client
        /// discovered there (`crate::oauth2::issuer`), and the callback is
        /// reached without the prefix. It holds an access key, so it is sealed
        /// like `state` ([`crate::seal::Pending::GateBase`]). Absent (rows
        /// written before it existed too): the issuer is the origin.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate_base: Option<crate::seal::Sealed>,
    },
    /// The device flow (`crate::device`): the device row named by this hash
    /// of its device code is approved (or denied) and the page says "return to
    /// your device".
    Device { device_code_hash: String },
    /// Re-authorization into the same authid (`crate::reauthorize`): the new
    /// login's grant replaces the one under `authid` if it is the same
    /// account. The authid is sealed under a key from this login's
    /// browser-binding cookie ([`crate::seal::Pending::ReauthorizeAuthId`]),
    /// which is stored only hashed, so the row alone does not reveal it.
    Reauthorize { authid: crate::seal::Sealed },
}

impl LoginEnding {
    /// Whether the authid goes to a party other than the browser that logs
    /// in: a client's redirect URI or a device (RFC 8628 §5.4: a phished
    /// device code must not end in a silent login). The old UI's hand-off is
    /// the third such ending; it is told by the login's fetch token.
    pub fn hands_authid_elsewhere(&self) -> bool {
        matches!(
            self,
            LoginEnding::Authorize { .. } | LoginEnding::Device { .. }
        )
    }

    /// Whether the provider must show its consent page: every login whose
    /// authid goes elsewhere, and a re-authorization (the user says again,
    /// at the provider, that this broker may keep access).
    pub fn asks_consent(&self) -> bool {
        self.hands_authid_elsewhere() || matches!(self, LoginEnding::Reauthorize { .. })
    }

    /// The `login_states.ending` value: NULL for the result page.
    pub fn to_column(&self) -> Result<Option<String>, BrokerError> {
        match self {
            LoginEnding::ResultPage => Ok(None),
            other => serde_json::to_string(other)
                .map(Some)
                .map_err(|_| BrokerError::internal("a login continuation did not serialize")),
        }
    }

    /// Reads `login_states.ending`. An unreadable value (a row written by a
    /// newer broker during a rollback) ends the login with the result page:
    /// the grant is kept and the user sees its authid, never an error.
    pub fn from_column(column: Option<&str>) -> LoginEnding {
        column
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

/// A freshly started login: what to store, what to send the browser.
pub struct StartedLogin {
    pub state: StateToken,
    /// The cookie value (secret; goes only into `Set-Cookie`).
    pub binding: StateToken,
    pub record: LoginRecord,
    pub authorize_url: String,
}

impl std::fmt::Debug for StartedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartedLogin([redacted])")
    }
}

/// The redirect URI registered at the provider: `<origin>/callback/<provider>`.
pub fn redirect_uri(origin: &str, provider_id: &str) -> String {
    format!("{}/callback/{}", origin.trim_end_matches('/'), provider_id)
}

/// Starts a login at `provider` for a broker served at `origin`.
pub fn start(
    provider: &Provider,
    origin: &str,
    token_version: u8,
    fetch_token: Option<&str>,
    ending: LoginEnding,
    now: i64,
) -> Result<StartedLogin, BrokerError> {
    let rnd = || random::token_b64url(32);
    let state = StateToken::new(rnd()?);
    let binding = StateToken::new(rnd()?);
    let mut url =
        url::Url::parse(&provider.authorize_url).map_err(|_| BrokerError::Misconfigured {
            what: "a provider's authorize_url is not a URL",
        })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &redirect_uri(origin, &provider.id))
            .append_pair("state", state.secret());
        if !provider.scopes.is_empty() {
            q.append_pair("scope", &provider.scopes);
        }
        if provider.pkce {
            let verifier = PkceVerifier::derive(binding.secret(), state.secret());
            q.append_pair("code_challenge", &verifier.challenge_s256())
                .append_pair("code_challenge_method", "S256");
        }
        // A login whose authid goes to another window, a client or a device
        // must not pass silently: the provider shows its consent page.
        let ask_consent = fetch_token.is_some() || ending.asks_consent();
        for (k, v) in provider.authorize_params(ask_consent) {
            q.append_pair(k, v);
        }
    }
    Ok(StartedLogin {
        record: LoginRecord {
            provider: provider.id.clone(),
            binding_hash: binding_hash(&binding),
            token_version,
            fetch_token_hash: fetch_token.map(crate::handoff::token_hash),
            expires_at: now + LOGIN_TTL_SECS,
            ending,
        },
        authorize_url: url.into(),
        state,
        binding,
    })
}

/// The `Set-Cookie` value binding the login to this browser.
pub fn set_cookie(binding: &StateToken) -> String {
    cookie::set(COOKIE_NAME, binding.secret(), LOGIN_TTL_SECS)
}

/// The `Set-Cookie` value that clears the binding once the callback used it.
pub fn clear_cookie() -> String {
    cookie::set(COOKIE_NAME, "", 0)
}

/// Reads the binding cookie from a `Cookie` header.
pub fn cookie_from_header(header: &str) -> Option<StateToken> {
    cookie::value(header, COOKIE_NAME).map(StateToken::new)
}

/// Why a callback is refused (every one becomes a 4xx page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackError {
    /// No row for the state: unknown, replayed or garbage-collected.
    UnknownState,
    Expired,
    /// The callback path names another provider than the login started with.
    ProviderMismatch,
    /// No cookie, or the cookie of another browser.
    WrongBrowser,
}

impl From<CallbackError> for BrokerError {
    /// Every refusal looks the same to the browser: start the login again.
    fn from(_: CallbackError) -> Self {
        BrokerError::InvalidLoginState
    }
}

/// Checks a login record, read but not yet consumed, against the callback.
/// Returns the PKCE verifier to send with the code exchange (when the provider
/// uses PKCE). Only then may the caller consume the record, under
/// [`binding_hash`] of the same cookie.
pub fn verify_callback(
    record: Option<&LoginRecord>,
    path_provider: &str,
    state: &StateToken,
    cookie: Option<&StateToken>,
    now: i64,
) -> Result<PkceVerifier, CallbackError> {
    let record = record.ok_or(CallbackError::UnknownState)?;
    if now >= record.expires_at {
        return Err(CallbackError::Expired);
    }
    if record.provider != path_provider {
        return Err(CallbackError::ProviderMismatch);
    }
    let cookie = cookie.ok_or(CallbackError::WrongBrowser)?;
    if !ct_eq(
        binding_hash(cookie).as_bytes(),
        record.binding_hash.as_bytes(),
    ) {
        return Err(CallbackError::WrongBrowser);
    }
    Ok(PkceVerifier::derive(cookie.secret(), state.secret()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalogue;

    fn demo() -> Provider {
        let json = r#"[{"id":"demo","name":"Demo","authorize_url":"http://127.0.0.1:9/authorize?x=1",
            "token_url":"http://127.0.0.1:9/token","scopes":"files offline","client_id":"cid",
            "extra_authorize_params":{"prompt":"consent"}}]"#;
        Catalogue::load(Some(json))
            .unwrap()
            .get("demo")
            .unwrap()
            .clone()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    fn get<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
        &q.iter().find(|(kk, _)| kk == k).unwrap().1
    }

    #[test]
    fn authorize_url_carries_state_pkce_and_exact_redirect_uri() {
        let s = start(
            &demo(),
            "https://broker.example",
            1,
            None,
            LoginEnding::ResultPage,
            100,
        )
        .unwrap();
        let q = query(&s.authorize_url);
        assert_eq!(get(&q, "x"), "1", "existing query kept");
        assert_eq!(get(&q, "response_type"), "code");
        assert_eq!(get(&q, "client_id"), "cid");
        assert_eq!(
            get(&q, "redirect_uri"),
            "https://broker.example/callback/demo"
        );
        assert_eq!(get(&q, "state"), s.state.secret());
        assert_eq!(get(&q, "scope"), "files offline");
        assert_eq!(get(&q, "code_challenge_method"), "S256");
        assert_eq!(get(&q, "prompt"), "consent");
        assert_eq!(s.record.expires_at, 100 + LOGIN_TTL_SECS);
        assert_eq!(s.record.binding_hash, sha256_hex(s.binding.secret()));
        // The challenge matches the verifier the callback will derive.
        let verifier =
            verify_callback(Some(&s.record), "demo", &s.state, Some(&s.binding), 101).unwrap();
        assert_eq!(get(&q, "code_challenge"), verifier.challenge_s256());
        assert!(!s.authorize_url.contains(s.binding.secret()));
    }

    #[test]
    fn two_logins_get_different_state_and_binding() {
        let a = start(&demo(), "https://b", 1, None, LoginEnding::ResultPage, 0).unwrap();
        let b = start(&demo(), "https://b", 1, None, LoginEnding::ResultPage, 0).unwrap();
        assert_ne!(a.state.secret(), b.state.secret());
        assert_ne!(a.binding.secret(), b.binding.secret());
        assert_eq!(a.state.secret().len(), 43);
    }

    #[test]
    fn callback_refuses_unknown_expired_wrong_provider_and_wrong_browser() {
        let s = start(
            &demo(),
            "https://b",
            1,
            Some("tok"),
            LoginEnding::ResultPage,
            0,
        )
        .unwrap();
        let other = start(&demo(), "https://b", 1, None, LoginEnding::ResultPage, 0).unwrap();
        let ok = |r, p, c, now| verify_callback(r, p, &s.state, c, now).err();
        assert_eq!(
            ok(None, "demo", Some(&s.binding), 1),
            Some(CallbackError::UnknownState)
        );
        assert_eq!(
            ok(Some(&s.record), "demo", Some(&s.binding), LOGIN_TTL_SECS),
            Some(CallbackError::Expired)
        );
        assert_eq!(
            ok(Some(&s.record), "box.com", Some(&s.binding), 1),
            Some(CallbackError::ProviderMismatch)
        );
        assert_eq!(
            ok(Some(&s.record), "demo", None, 1),
            Some(CallbackError::WrongBrowser)
        );
        assert_eq!(
            ok(Some(&s.record), "demo", Some(&other.binding), 1),
            Some(CallbackError::WrongBrowser)
        );
        assert!(ok(Some(&s.record), "demo", Some(&s.binding), 1).is_none());
        assert_eq!(
            s.record.fetch_token_hash,
            Some(crate::handoff::token_hash("tok"))
        );
    }

    #[test]
    fn every_login_whose_authid_goes_to_another_party_asks_the_provider_for_consent() {
        let mut p = demo();
        p.extra_authorize_params.clear();
        p.consent_authorize_params = vec![("force_reapprove".into(), "true".into())];
        let plain = query(
            &start(&p, "https://b", 1, None, LoginEnding::ResultPage, 0)
                .unwrap()
                .authorize_url,
        );
        assert!(!plain.iter().any(|(k, _)| k == "force_reapprove"));
        let handoff = query(
            &start(&p, "https://b", 1, Some("tok"), LoginEnding::ResultPage, 0)
                .unwrap()
                .authorize_url,
        );
        assert_eq!(get(&handoff, "force_reapprove"), "true");
        let elsewhere = [
            LoginEnding::Authorize {
                redirect_uri: "http://127.0.0.1:9/".into(),
                code_challenge: None,
                state: None,
                gate_base: None,
            },
            LoginEnding::Device {
                device_code_hash: "h".into(),
            },
        ];
        for ending in elsewhere {
            let q = query(
                &start(&p, "https://b", 1, None, ending, 0)
                    .unwrap()
                    .authorize_url,
            );
            assert_eq!(get(&q, "force_reapprove"), "true");
        }
        let akeeba = LoginEnding::Akeeba {
            engine: "box".into(),
        };
        let q = query(
            &start(&p, "https://b", 1, None, akeeba, 0)
                .unwrap()
                .authorize_url,
        );
        assert!(!q.iter().any(|(k, _)| k == "force_reapprove"));
    }

    #[test]
    fn no_pkce_parameters_for_providers_without_pkce() {
        let mut p = demo();
        p.pkce = false;
        let q = query(
            &start(&p, "https://b", 1, None, LoginEnding::ResultPage, 0)
                .unwrap()
                .authorize_url,
        );
        assert!(!q.iter().any(|(k, _)| k.starts_with("code_challenge")));
    }

    #[test]
    fn cookie_round_trip() {
        let s = start(&demo(), "https://b", 1, None, LoginEnding::ResultPage, 0).unwrap();
        let header = format!(
            "a=b; {}; c=d",
            set_cookie(&s.binding).split(';').next().unwrap()
        );
        assert_eq!(cookie_from_header(&header).unwrap(), s.binding);
        assert!(cookie_from_header("a=b").is_none());
        assert!(cookie_from_header(&format!("{COOKIE_NAME}=")).is_none());
        assert!(set_cookie(&s.binding).contains("Secure; HttpOnly; SameSite=Lax"));
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn the_result_page_is_stored_as_null_and_anything_unreadable_ends_there() {
        assert_eq!(LoginEnding::ResultPage.to_column().unwrap(), None);
        assert_eq!(LoginEnding::from_column(None), LoginEnding::ResultPage);
        assert_eq!(
            LoginEnding::from_column(Some("{\"kind\":\"from_the_future\"}")),
            LoginEnding::ResultPage
        );
        assert_eq!(
            LoginEnding::from_column(Some("{\"kind\":\"result_page\"}")),
            LoginEnding::ResultPage
        );
    }

    #[test]
    fn an_akeeba_ending_round_trips_through_its_column() {
        let ending = LoginEnding::Akeeba {
            engine: "box".into(),
        };
        let column = ending.to_column().unwrap();
        assert_eq!(
            column.as_deref(),
            Some("{\"kind\":\"akeeba\",\"engine\":\"box\"}")
        );
        assert_eq!(LoginEnding::from_column(column.as_deref()), ending);
    }

    #[test]
    fn the_oauth_endings_round_trip_through_their_column_and_hold_no_plain_state() {
        let sealed = crate::seal::Sealed {
            key_version: 1,
            nonce: "bm9uY2U=".into(),
            ciphertext: "Y3Q=".into(),
        };
        let endings = [
            LoginEnding::Authorize {
                redirect_uri: "http://127.0.0.1:53682/".into(),
                code_challenge: None,
                state: Some(sealed.clone()),
                gate_base: None,
            },
            LoginEnding::Authorize {
                redirect_uri: "http://127.0.0.1:53682/".into(),
                code_challenge: None,
                state: None,
                gate_base: Some(sealed),
            },
            LoginEnding::Device {
                device_code_hash: "ab".repeat(32),
            },
        ];
        for e in endings {
            let column = e.to_column().unwrap().expect("stored as JSON");
            assert!(column.contains("\"kind\":"), "{column}");
            assert_eq!(LoginEnding::from_column(Some(&column)), e);
        }
        // A row written before `gate_base` existed (or without a prefix)
        // reads as one without it, and one without it is written as before.
        let before = r#"{"kind":"authorize","redirect_uri":"http://127.0.0.1:1/","code_challenge":null,"state":null}"#;
        let read = LoginEnding::from_column(Some(before));
        assert_eq!(
            read,
            LoginEnding::Authorize {
                redirect_uri: "http://127.0.0.1:1/".into(),
                code_challenge: None,
                state: None,
                gate_base: None,
            }
        );
        assert_eq!(read.to_column().unwrap().as_deref(), Some(before));
    }
}
