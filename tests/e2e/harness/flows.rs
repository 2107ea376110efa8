//! The sequences tests share: log in without a browser and get an authid, the
//! mock's consent, a browser's login in a cookie jar (also with a Duplicati
//! hand-off), the result page's authid and confirmation token, a Duplicati
//! fetch token, and running a sequence in one rate-limit window.

use std::time::Duration;

use std::sync::Arc;

use mock_provider::{Config, MockProvider};
use serde_json::Value;

use super::{enc, request, Broker, Jar, Options, Resp};

impl Broker {
    /// Browser-less login: /login → mock authorize → /callback with the cookie.
    /// Returns the authid shown on the result page.
    pub fn login(&self) -> String {
        self.login_at("/login?id=demo")
    }

    /// Browser-less login starting at `login_path` (e.g. `/login?id=box&tokenversion=2`).
    pub fn login_at(&self, login_path: &str) -> String {
        let (callback, cookie) = self.login_to_callback(login_path);
        let page = request("GET", &callback, &[("Cookie", &cookie)], None);
        assert_eq!(page.status, 200, "result page: {}", page.body);
        let authid = extract_authid(&page.body).expect("authid on result page");
        self.remember(&authid);
        authid
    }

    pub fn remember(&self, authid: &str) {
        self.authids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(authid.to_string());
    }

    /// /login then the mock's authorize; returns the callback URL and the cookie pair.
    pub fn start_login_to_callback(&self) -> (String, String) {
        self.login_to_callback("/login?id=demo")
    }

    /// The mock's authorize at `authorize` (it consents at once): the callback
    /// URL it redirects the browser to, checked to lead back to the broker.
    fn consent_at_mock(&self, authorize: &str) -> String {
        let consent = request("GET", authorize, &[], None);
        assert_eq!(consent.status, 302, "mock authorize");
        let callback = consent.header("Location").expect("callback").to_string();
        assert!(
            callback.starts_with(&self.base),
            "callback goes to the broker"
        );
        callback
    }

    /// Like [`Broker::start_login_to_callback`] from any login path; the cookie
    /// string holds every cookie the login set.
    pub fn login_to_callback(&self, login_path: &str) -> (String, String) {
        let start = self.get(login_path);
        assert_eq!(start.status, 302, "login: {}", start.body);
        let cookie = start
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie"))
            .filter_map(|(_, v)| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        assert!(!cookie.is_empty(), "login sets a cookie");
        let authorize = start.header("Location").expect("Location").to_string();
        (self.consent_at_mock(&authorize), cookie)
    }

    /// A browser's login from `login_path` in `jar`: /login, the mock's
    /// authorize (which consents at once), the callback. Returns the callback's
    /// answer (the result page) and the authorize URL the broker sent the
    /// browser to.
    pub fn login_in(&self, jar: &mut Jar, login_path: &str) -> (Resp, String) {
        let start = self.get_in(jar, login_path);
        assert_eq!(start.status, 302, "login: {}", start.body);
        let authorize = start.header("Location").expect("Location").to_string();
        let callback = self.consent_at_mock(&authorize);
        (self.in_jar(jar, "GET", &callback, None), authorize)
    }

    /// Duplicati's old-UI popup in browser `jar`: the index registers the
    /// hand-off `token` in it, then the login carrying the token (see
    /// [`Broker::login_in`]). The result page and the authorize URL.
    pub fn handoff_login_in(&self, jar: &mut Jar, token: &str) -> (Resp, String) {
        let index = self.get_in(jar, &format!("/?type=demo&token={token}"));
        assert_eq!(index.status, 200, "index: {}", index.body);
        self.login_in(jar, &format!("/login?id=demo&token={token}"))
    }
}

/// A fetch token shaped like the ones Duplicati's old UI makes,
/// `Math.random().toString(36).substr(2) + Math.random().toString(36).substr(2)`
/// (`EditUriBuiltins.js`; see `oauth_broker::handoff::MIN_TOKEN_BITS`): two
/// base-36 expansions of a random 53-bit fraction, up to 11 digits each.
pub fn duplicati_token() -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::new();
    for _ in 0..2 {
        let mut buf = [0u8; 8];
        oauth_broker::random::fill(&mut buf).expect("randomness");
        let mut x = (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64;
        for _ in 0..11 {
            x *= 36.0;
            let d = x.floor();
            out.push(DIGITS[d as usize] as char);
            x -= d;
            if x == 0.0 {
                break;
            }
        }
    }
    out
}

/// The result page's confirmation token (the hand-off form's hidden `confirm`).
pub fn extract_confirm(html: &str) -> Option<String> {
    let marker = "name=\"confirm\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// `period` of the test workers' `[[ratelimits]]` (seconds).
pub const RATE_LIMIT_PERIOD: u64 = 60;

/// Milliseconds since the unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sleeps until the local rate limiter's next window has begun.
fn sleep_into_next_rate_limit_window() {
    let period_ms = RATE_LIMIT_PERIOD * 1000;
    let left = period_ms - unix_ms() % period_ms;
    std::thread::sleep(Duration::from_millis(left + 500));
}

/// Runs `f` so that every request it makes is counted in one window of the local
/// rate limiter, and returns what `f` observed (assert on that, not inside `f`).
///
/// The limiter `wrangler dev` runs (miniflare's) counts in fixed windows aligned
/// to the unix clock (`now / period`) and forgets every count when the next window
/// starts, so a sequence that counts hits across that edge sees a limit that was
/// never reached. `f` starts only with at least 20 s of its window left (else after
/// sleeping into the next one); if the clock still crossed an edge while it ran,
/// what it saw is discarded and it runs again at the start of a fresh window,
/// which is empty because nothing is sent while we sleep. At most three runs.
/// Counts made before the first run stay in its window: start from a worker
/// nothing limited has hit yet, or let `f` exhaust the limit itself.
pub fn in_one_rate_limit_window<T>(mut f: impl FnMut() -> T) -> T {
    let period_ms = RATE_LIMIT_PERIOD * 1000;
    let left = period_ms - unix_ms() % period_ms;
    if left < 20_000 {
        println!(
            "    (waiting {:.0} s for a fresh rate-limit window)",
            left as f64 / 1000.0
        );
        sleep_into_next_rate_limit_window();
    }
    for _ in 0..3 {
        let window = unix_ms() / period_ms;
        let seen = f();
        if unix_ms() / period_ms == window {
            return seen;
        }
        println!("    (a rate-limit window ended mid-run: running again in a fresh one)");
        sleep_into_next_rate_limit_window();
    }
    panic!("three runs in a row each spanned two rate-limit windows")
}

/// The authid from a result page (`data-authid="…"`).
pub fn extract_authid(html: &str) -> Option<String> {
    let start = html.find("data-authid=\"")? + "data-authid=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

// The OAuth front door as a client meets it: discovery, the token endpoint,
// a login through the mock, the redirect back to a loopback client.

/// A client's loopback redirect URI (nothing listens there: the test reads
/// the `Location` the broker sends, as a browser would follow it).
pub const LOOPBACK: &str = "http://127.0.0.1:53682/cb?x=1";

/// The RFC 8414 metadata document.
pub fn metadata(b: &Broker) -> Value {
    let r = b.get("/.well-known/oauth-authorization-server");
    assert_eq!(r.status, 200, "metadata: {}", r.body);
    r.json()
}

/// The front door's endpoints, as RFC 8414 metadata names them.
pub struct Endpoints {
    pub token: String,
    pub revocation: String,
}

/// Discovers the endpoints (every test starts here, as a client would).
pub fn discover(b: &Broker) -> Endpoints {
    let v = metadata(b);
    let url = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in metadata"))
            .to_string()
    };
    Endpoints {
        token: url("token_endpoint"),
        revocation: url("revocation_endpoint"),
    }
}

/// The token endpoint, as a client discovers it.
pub fn token_endpoint(b: &Broker) -> String {
    let m = metadata(b);
    m["token_endpoint"]
        .as_str()
        .expect("token_endpoint in the metadata")
        .to_string()
}

/// POSTs a form to the token endpoint.
pub fn token_post(b: &Broker, body: &str) -> Resp {
    request(
        "POST",
        &token_endpoint(b),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body),
    )
}

/// The query pairs of a URL.
pub fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

/// A browser at `path` on the broker (a login start), through the mock
/// provider (which consents at once unless told to deny) and back to the
/// callback: the callback's answer.
pub fn through_login(b: &Broker, jar: &mut Jar, path: &str) -> Resp {
    let start = b.get_in(jar, path);
    assert_eq!(start.status, 302, "login start {path}: {}", start.body);
    let authorize = start.header("Location").expect("Location").to_string();
    assert!(
        authorize.starts_with(&b.mock.base_url()),
        "the login goes to the provider"
    );
    let consent = request("GET", &authorize, &[], None);
    assert_eq!(consent.status, 302, "mock authorize");
    let callback = consent.header("Location").expect("callback").to_string();
    let path = callback
        .strip_prefix(&b.base)
        .expect("the provider sends the browser back to the broker");
    b.get_in(jar, path)
}

/// A refresh at the token endpoint with `authid` as the refresh token.
pub fn refresh_at_token_endpoint(b: &Broker, authid: &str) -> Resp {
    token_post(
        b,
        &format!("grant_type=refresh_token&refresh_token={}", enc(authid)),
    )
}

impl Broker {
    /// A worker of its own behind the operator's access gate: `keys` is its
    /// `ACCESS_KEYS` (one key, or several separated by commas).
    pub fn start_gated(mock: &Arc<MockProvider>, keys: &str) -> Broker {
        Broker::start_with(
            mock,
            Options {
                extra_vars: vec![("ACCESS_KEYS".into(), keys.into())],
                ..Options::default()
            },
        )
    }

    /// A login whose access token is due at once (30 s left), after which the
    /// provider answers every refresh `invalid_grant`, as when the user revoked
    /// the app: the authid of a grant that needs re-authorization.
    pub fn login_then_provider_refuses(&self) -> String {
        self.mock.set_config(Config {
            access_token_ttl: 30,
            ..Config::default()
        });
        let authid = self.login();
        self.mock.set_config(Config {
            invalid_grant: true,
            ..Config::default()
        });
        authid
    }

    /// The refresh token a token answer (`answer`, its JSON) names, which is an
    /// authid, remembered for the leak checks.
    pub fn remember_refresh_token(&self, answer: &Value) -> String {
        let authid = answer["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string();
        self.remember(&authid);
        authid
    }

    /// Whether the mock provider issued `access` (an access token a client got
    /// from the broker is the provider's, not one the broker made up).
    pub fn provider_issued(&self, access: &str) -> bool {
        self.mock
            .stats()
            .issued_access_tokens
            .iter()
            .any(|t| t == access)
    }
}
