//! The OAuth 2.0 authorization endpoint for native apps (RFC 6749 §4.1,
//! RFC 8252): which requests are accepted, where the browser may be sent
//! back, and what a one-time authorization code is bound to.
//!
//! - `client_id` names the provider; the client itself is public.
//! - `redirect_uri` must be a loopback `http` URI on any port (RFC 8252 §7.3,
//!   §8.3: `127.0.0.1`, `[::1]`, or `localhost`), or exactly one of the
//!   operator's `REDIRECT_URIS`. An invalid `client_id` or `redirect_uri` is an
//!   error page, never a redirect (RFC 6749 §4.1.2.1, §10.15 open redirector).
//! - Errors found after both are valid go back to the client as `error=`
//!   (§4.1.2.1) with its `state`.
//! - PKCE (RFC 7636) S256 is enforced when the client sends a challenge; rclone
//!   sends none (rclone lib/oauthutil/oauthutil.go builds its auth URL with
//!   `oauth2.Config.AuthCodeURL(state)` and no challenge options).
//! - The code is 256 random bits, lives [`CODE_TTL_SECS`], is stored only as
//!   [`code_hash`], is spent on its first presentation, and is bound to the
//!   provider, the exact `redirect_uri` and the challenge.

use crate::digest::sha256_hex;
use crate::pkce::PkceVerifier;
use crate::request::{single, Params};
use crate::secret::ct_eq;

/// How long an authorization code may wait to be redeemed (RFC 6749 §4.1.2
/// recommends at most 10 minutes; a native app redeems it at once).
pub const CODE_TTL_SECS: i64 = 60;

/// Storage key of an authorization code (`authorization_codes.code_hash`).
pub fn code_hash(code: &str) -> String {
    sha256_hex(&format!("oauth-broker/v1/authorization-code|{code}"))
}

/// Whether `uri` is a redirect URI the broker may send a browser to: a
/// loopback `http` URI (any port, RFC 8252 §7.3), or exactly one the
/// operator listed. No fragment (RFC 6749 §3.1.2), no user info.
pub fn valid_redirect_uri(uri: &str, operator_listed: &[String]) -> bool {
    if operator_listed.iter().any(|u| u == uri) {
        return true;
    }
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    if url.scheme() != "http"
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The operator's `REDIRECT_URIS`: comma- or whitespace-separated.
pub fn parse_redirect_uris(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A validated authorization request.
#[derive(PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// The provider (`client_id`), as the client spelled it.
    pub client_id: String,
    pub redirect_uri: String,
    /// The client's `state`, returned verbatim.
    pub state: Option<String>,
    /// The S256 PKCE challenge, if the client sent one.
    pub code_challenge: Option<String>,
}

impl std::fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeRequest")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Shown as an error page: the client cannot be trusted to receive it.
    Page {
        code: &'static str,
        what: &'static str,
    },
    /// Sent back to the validated `redirect_uri` (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

fn page(code: &'static str, what: &'static str) -> Refusal {
    Refusal::Page { code, what }
}

/// A PKCE challenge or verifier: 43 to 128 unreserved characters (RFC 7636 §4.1, §4.2).
fn pkce_shaped(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Validates `GET /oauth/authorize`'s query. `client_id` is checked only for
/// presence here; whether it names a configured provider is the caller's
/// check (it too answers with a page). A repeated parameter is refused
/// (RFC 6749 §3.1), as a page when it is `client_id` or `redirect_uri`.
pub fn parse_request(
    query: &Params,
    operator_listed: &[String],
) -> Result<AuthorizeRequest, Refusal> {
    let one = |name| single(query, name);
    let client_id = one("client_id")
        .map_err(|_| page("invalid_request", "client_id was sent more than once"))?
        .filter(|s| !s.is_empty())
        .ok_or(page(
            "invalid_request",
            "client_id (the provider) is missing",
        ))?
        .to_string();
    let redirect_uri = one("redirect_uri")
        .map_err(|_| page("invalid_request", "redirect_uri was sent more than once"))?
        .ok_or(page(
            "invalid_request",
            "redirect_uri is missing (a native app must name its loopback redirect)",
        ))?
        .to_string();
    if !valid_redirect_uri(&redirect_uri, operator_listed) {
        return Err(page(
            "invalid_redirect_uri",
            "redirect_uri must be a loopback http URI (127.0.0.1, [::1] or localhost, any port) \
             or one the operator listed",
        ));
    }
    // From here on the client gets its errors at its redirect URI; a repeated
    // state cannot be returned, so it goes back without one.
    let state = one("state").ok().flatten().map(str::to_string);
    let back = |error, description| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    let params_once = [
        "state",
        "response_type",
        "code_challenge",
        "code_challenge_method",
        "scope",
    ]
    .iter()
    .all(|n| one(n).is_ok());
    if !params_once {
        return Err(back(
            "invalid_request",
            "a parameter was sent more than once",
        ));
    }
    match one("response_type").ok().flatten() {
        Some("code") => {}
        Some(_) => {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(back("invalid_request", "response_type is missing")),
    }
    let challenge = one("code_challenge").ok().flatten();
    let method = one("code_challenge_method").ok().flatten();
    let code_challenge = match (challenge, method) {
        (None, None) => None,
        (Some(c), Some("S256")) if pkce_shaped(c) => Some(c.to_string()),
        (Some(_), Some("S256")) => {
            return Err(back("invalid_request", "code_challenge is malformed"))
        }
        // RFC 7636 §4.3 defaults to `plain`, which we do not support.
        (Some(_), _) => {
            return Err(back(
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            ))
        }
        (None, Some(_)) => {
            return Err(back(
                "invalid_request",
                "code_challenge_method without code_challenge",
            ))
        }
    };
    Ok(AuthorizeRequest {
        client_id,
        redirect_uri,
        state,
        code_challenge,
    })
}

/// `redirect_uri` with `pairs` appended to its query (RFC 6749 §4.1.2: the
/// query of a registered URI is kept).
pub fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(redirect_uri).ok()?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(url.into())
}

/// The success redirect (§4.1.2): `code`, the client's `state` if it sent
/// one, and `iss`, the issuer the client discovered (RFC 9207 §2: so that a
/// client talking to several authorization servers can tell which one
/// answered, the mix-up defence of RFC 9700 §4.4).
pub fn code_redirect(
    redirect_uri: &str,
    code: &str,
    state: Option<&str>,
    issuer: &str,
) -> Option<String> {
    let mut pairs = vec![("code", code)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", issuer));
    redirect_with(redirect_uri, &pairs)
}

/// The error redirect (§4.1.2.1), with `iss` as on success (RFC 9207 §2).
pub fn error_redirect(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
    issuer: &str,
) -> Option<String> {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", issuer));
    redirect_with(redirect_uri, &pairs)
}

/// What an issued code is bound to (an `authorization_codes` row, without its
/// sealed authid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub provider: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub expires_at: i64,
}

/// The refusal of a code redeemed more than once (RFC 6749 §4.1.2: the grant
/// its first redemption yielded is revoked).
pub const REPLAYED: &str = "the authorization code was already used; what it granted is revoked";

/// Checks a presented code against the token request (RFC 6749 §4.1.3,
/// RFC 7636 §4.6), before anything is counted. Each refusal is
/// `invalid_grant` with this description and spends nothing: an expired code,
/// or a first presentation that was the client's own mistake (another
/// client_id, redirect_uri or verifier), is not a use of the code. Only a
/// presentation that passes here is counted ([`claimed`]), so only a second
/// *successful* presentation is a replay.
pub fn check_redemption(
    record: Option<&CodeRecord>,
    client_id: Option<&str>,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    now: i64,
) -> Result<(), &'static str> {
    let r = record.ok_or("unknown or already used authorization code")?;
    if now >= r.expires_at {
        return Err("the authorization code has expired");
    }
    // §4.1.3: a public client sends its client_id; the code must be its own.
    match client_id {
        Some(id) if crate::providers::canonical_id(id) == r.provider => {}
        Some(_) => return Err("the authorization code was issued to another client_id"),
        None => return Err("client_id is required to redeem an authorization code"),
    }
    // §4.1.3: redirect_uri is required, identical, as it was in the request.
    match redirect_uri {
        Some(u) if ct_eq(u.as_bytes(), r.redirect_uri.as_bytes()) => {}
        _ => return Err("redirect_uri does not match the authorization request"),
    }
    match (&r.code_challenge, verifier) {
        (Some(challenge), Some(v)) if pkce_shaped(v) => {
            let derived = PkceVerifier::from_string(v.to_string()).challenge_s256();
            if !ct_eq(derived.as_bytes(), challenge.as_bytes()) {
                return Err("code_verifier does not match the code_challenge");
            }
        }
        (Some(_), _) => return Err("a valid code_verifier is required"),
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is
        // a downgrade attempt.
        (None, Some(_)) => return Err("code_verifier sent for a code issued without PKCE"),
        (None, None) => {}
    }
    Ok(())
}

/// The outcome of counting a checked presentation (`redeemed`, this one
/// included): the first is the redemption; any later one is a replay (§4.1.2:
/// "If an authorization code is used more than once, the authorization server
/// MUST deny the request and SHOULD revoke … all tokens previously issued
/// based on that authorization code").
pub fn claimed(redeemed: i64) -> Result<(), &'static str> {
    match redeemed {
        1 => Ok(()),
        _ => Err(REPLAYED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_params;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 Appendix B.
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn loopback_redirects_on_any_port_are_valid_and_nothing_else_is() {
        for ok in [
            "http://127.0.0.1:53682/",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/cb?x=1",
            "http://localhost:1/",
            "http://LOCALHOST:5/",
        ] {
            assert!(valid_redirect_uri(ok, &[]), "{ok}");
        }
        for bad in [
            "https://evil.example/cb",
            "http://evil.example/cb",
            "http://127.0.0.1.evil.example/",
            "http://localhost.evil.example/",
            "http://localhost@evil.example/",
            "http://user:pw@127.0.0.1/",
            "http://127.0.0.2/",
            "http://127.0.0.1:53682/#frag",
            "https://127.0.0.1/",
            "javascript:alert(1)",
            "//127.0.0.1/",
            "",
        ] {
            assert!(!valid_redirect_uri(bad, &[]), "{bad}");
        }
        let listed = parse_redirect_uris(Some("https://app.example/cb, https://b.example/x"));
        assert!(valid_redirect_uri("https://app.example/cb", &listed));
        assert!(!valid_redirect_uri("https://app.example/cb/", &listed));
    }

    fn parse(q: &str) -> Result<AuthorizeRequest, Refusal> {
        parse_request(&parse_params(q), &[])
    }

    #[test]
    fn a_bad_client_id_or_redirect_uri_is_a_page_never_a_redirect() {
        for q in [
            "response_type=code&redirect_uri=http://127.0.0.1:1/",
            "response_type=code&client_id=demo",
            "response_type=code&client_id=demo&redirect_uri=https://evil.example/",
            "client_id=demo&client_id=box&redirect_uri=http://127.0.0.1:1/",
            "client_id=demo&redirect_uri=http://127.0.0.1:1/&redirect_uri=http://127.0.0.1:2/",
        ] {
            assert!(matches!(parse(q), Err(Refusal::Page { .. })), "{q}");
        }
    }

    #[test]
    fn later_errors_go_back_to_the_client_with_its_state() {
        let cases = [
            ("response_type=token", "unsupported_response_type"),
            ("", "invalid_request"),
            (
                "response_type=code&code_challenge=abc&code_challenge_method=S256",
                "invalid_request",
            ),
            (
                &format!(
                    "response_type=code&code_challenge={CHALLENGE}&code_challenge_method=plain"
                )[..],
                "invalid_request",
            ),
            (
                &format!("response_type=code&code_challenge={CHALLENGE}")[..],
                "invalid_request",
            ),
            (
                "response_type=code&code_challenge_method=S256",
                "invalid_request",
            ),
        ];
        for (extra, want) in cases {
            let q =
                format!("client_id=demo&redirect_uri=http://127.0.0.1:9/cb&state=s%201&{extra}");
            match parse(&q) {
                Err(Refusal::Redirect { error, state, .. }) => {
                    assert_eq!(error, want, "{q}");
                    assert_eq!(state.as_deref(), Some("s 1"));
                }
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_good_request_keeps_state_and_challenge() {
        let r = parse(&format!(
            "client_id=demo&redirect_uri=http://127.0.0.1:9/cb&state=xyz&response_type=code\
             &code_challenge={CHALLENGE}&code_challenge_method=S256"
        ))
        .unwrap();
        assert_eq!(r.client_id, "demo");
        assert_eq!(r.state.as_deref(), Some("xyz"));
        assert_eq!(r.code_challenge.as_deref(), Some(CHALLENGE));
        let rclone = parse("client_id=demo&redirect_uri=http://127.0.0.1:53682/&response_type=code&state=abc&access_type=offline").unwrap();
        assert_eq!(rclone.code_challenge, None);
    }

    #[test]
    fn redirects_keep_the_registered_query_and_encode_values() {
        assert_eq!(
            code_redirect("http://127.0.0.1:9/cb?a=1", "C", Some("s &x"), "https://b").unwrap(),
            "http://127.0.0.1:9/cb?a=1&code=C&state=s+%26x&iss=https%3A%2F%2Fb"
        );
        assert_eq!(
            error_redirect(
                "http://127.0.0.1:9/",
                "access_denied",
                "no",
                None,
                "https://b"
            )
            .unwrap(),
            "http://127.0.0.1:9/?error=access_denied&error_description=no&iss=https%3A%2F%2Fb"
        );
    }

    #[test]
    fn every_authorization_response_names_the_issuer_the_client_discovered() {
        // RFC 9207 §2: success and error responses alike; the issuer is
        // exactly the metadata's (a keyed one included), form-encoded once.
        let issuer = "https://b.example/k/a%2Bb";
        for to in [
            code_redirect("http://127.0.0.1:9/cb", "C", None, issuer),
            code_redirect("http://127.0.0.1:9/cb", "C", Some("s"), issuer),
            error_redirect("http://127.0.0.1:9/cb", "server_error", "x", None, issuer),
            error_redirect(
                "http://127.0.0.1:9/cb",
                "access_denied",
                "x",
                Some("s"),
                issuer,
            ),
        ] {
            let to = to.expect("a redirect");
            let url = url::Url::parse(&to).expect("a URL");
            let iss: Vec<_> = url.query_pairs().filter(|(k, _)| k == "iss").collect();
            assert_eq!(iss.len(), 1, "{to}");
            assert_eq!(iss[0].1, issuer, "{to}");
        }
    }

    fn record(challenge: Option<&str>) -> CodeRecord {
        CodeRecord {
            provider: "demo".into(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            code_challenge: challenge.map(str::to_string),
            expires_at: 100,
        }
    }

    #[test]
    fn a_code_is_bound_to_client_redirect_uri_pkce_and_its_lifetime() {
        let uri = Some("http://127.0.0.1:9/cb");
        let plain = record(None);
        assert_eq!(
            check_redemption(Some(&plain), Some("demo"), uri, None, 99),
            Ok(())
        );
        assert!(check_redemption(None, Some("demo"), uri, None, 99).is_err());
        assert!(check_redemption(Some(&plain), Some("demo"), uri, None, 100).is_err());
        assert!(check_redemption(Some(&plain), Some("box"), uri, None, 99).is_err());
        assert!(check_redemption(Some(&plain), None, uri, None, 99).is_err());
        assert!(check_redemption(Some(&plain), Some("demo"), None, None, 99).is_err());
        assert!(check_redemption(
            Some(&plain),
            Some("demo"),
            Some("http://127.0.0.1:9/"),
            None,
            99
        )
        .is_err());
        assert!(check_redemption(Some(&plain), Some("demo"), uri, Some(VERIFIER), 99).is_err());
        let pkce = record(Some(CHALLENGE));
        assert_eq!(
            check_redemption(Some(&pkce), Some("demo"), uri, Some(VERIFIER), 99),
            Ok(())
        );
        assert!(check_redemption(Some(&pkce), Some("demo"), uri, None, 99).is_err());
        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK";
        assert!(check_redemption(Some(&pkce), Some("demo"), uri, Some(wrong), 99).is_err());
        assert!(check_redemption(Some(&pkce), Some("demo"), uri, Some("short"), 99).is_err());
    }

    #[test]
    fn only_a_second_successful_presentation_is_a_replay() {
        assert_eq!(claimed(1), Ok(()));
        assert_eq!(claimed(2), Err(REPLAYED));
        assert_eq!(claimed(7), Err(REPLAYED));
        // A refused presentation is never counted, so it never makes the
        // client's corrected retry a replay: the check above spends nothing.
        let plain = record(None);
        let uri = Some("http://127.0.0.1:9/cb");
        assert!(check_redemption(Some(&plain), Some("box"), uri, None, 99).is_err());
        assert_eq!(
            check_redemption(Some(&plain), Some("demo"), uri, None, 99),
            Ok(())
        );
        // An expired code is refused as expired, never as a replay.
        assert_eq!(
            check_redemption(Some(&plain), Some("demo"), uri, None, 100),
            Err("the authorization code has expired")
        );
    }

    #[test]
    fn code_hashes_are_domain_separated() {
        assert_ne!(code_hash("x"), sha256_hex("x"));
        assert_eq!(code_hash("x").len(), 64);
    }
}
