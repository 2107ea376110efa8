//! Drop-in for Duplicati: the request shapes its command line, old (AngularJS)
//! UI and new UI send, replayed against the worker in workerd.

use mock_provider::{Config, Region, Rotation};

use crate::harness::{
    duplicati_token, extract_authid, extract_confirm, request, Broker, Jar, Resp, ADMIN_API_KEY,
};

pub const TESTS: &[crate::Test] = tests![
    duplicati_token_call_shape_is_answered,
    duplicati_oauth_url_with_a_query_still_works,
    duplicati_error_matrix_uses_statuses_and_x_reason_it_understands,
    box_and_dropbox_users_see_our_reason_for_an_unknown_wrong_or_revoked_authid,
    a_brief_d1_outage_is_retried_by_every_duplicati_backend,
    duplicati_login_url_derivation_lands_on_the_filtered_index,
    new_ui_refresh_type_redirects_to_the_index,
    old_ui_token_and_jsonp_fetch_hand_off_the_authid_once,
    an_attacker_chosen_fetch_token_yields_nothing,
    the_confirmation_is_single_use_and_bound_to_the_registering_browser,
    short_fetch_tokens_are_refused,
    a_login_with_a_pending_hand_off_asks_the_provider_for_consent,
    jsonp_callback_injection_is_refused,
    new_ui_result_page_posts_to_allowlisted_origins_only,
    duplicati_provider_ids_and_box_alias_work,
    pcloud_login_shows_the_access_token_as_authid_and_stores_nothing,
    pcloud_eu_callback_exchanges_at_the_eu_host_and_the_page_names_the_region,
    pcloud_callback_naming_an_unknown_host_is_refused_and_nothing_is_fetched,
    v2_authid_survives_five_single_use_rotations_and_stores_nothing,
    export_from_one_broker_imports_into_another,
    export_and_import_refuse_without_a_valid_api_key,
];

const UA: &str = "Duplicati v2.1.0.5";

/// Exactly what Duplicati's OAuthHelper sends: GET <oauth-url>, X-AuthID, its
/// User-Agent, no body.
fn duplicati_get(b: &Broker, oauth_url_path: &str, authid: &str) -> crate::harness::Resp {
    request(
        "GET",
        &b.url(oauth_url_path),
        &[("X-AuthID", authid), ("User-Agent", UA)],
        None,
    )
}

fn duplicati_token_call_shape_is_answered(b: &Broker) {
    let authid = b.login();
    let r = duplicati_get(b, "/refresh", &authid);
    assert_eq!(r.status, 200);
    let v = r.json();
    // Duplicati reads access_token (string) and expires (integer seconds).
    assert!(v["access_token"].is_string());
    assert!(v["expires"].is_i64() && v["expires"].as_i64() > Some(30));
    assert!(
        v.get("v2_authid").is_none(),
        "only v2 authids get v2_authid"
    );
}

fn duplicati_oauth_url_with_a_query_still_works(b: &Broker) {
    let authid = b.login();
    let r = duplicati_get(b, "/refresh?a=b&client=duplicati", &authid);
    assert_eq!(r.status, 200, "{}", r.body);
}

fn duplicati_error_matrix_uses_statuses_and_x_reason_it_understands(b: &Broker) {
    // Malformed: 4xx (Duplicati retries once), with X-Reason.
    let r = duplicati_get(b, "/refresh", "not-an-authid");
    assert!((400..500).contains(&r.status) && r.status != 429);
    assert!(r.header("X-Reason").is_some_and(|x| !x.is_empty()));
    // Unknown authid: 401 (never 404, "folder missing" to Dropbox) with a
    // challenge, X-Reason, and Box's {status, code, message} in the body.
    let unknown = format!("{}:{}", "0".repeat(32), "A".repeat(43));
    let r = duplicati_get(b, "/refresh", &unknown);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("WWW-Authenticate").is_some());
    assert!(r.header("X-Reason").is_some_and(|x| !x.is_empty()));
    assert_eq!(r.json()["status"], 401);
    assert_eq!(r.json()["code"], "unknown_authid");
    assert_eq!(r.json()["message"], r.json()["error_description"]);
    // Re-authorization needed: 503 + non-empty X-Reason (Duplicati stops and shows it).
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authid = b.login();
    let other = b.login();
    b.mock.set_config(Config {
        invalid_grant: true,
        ..Config::default()
    });
    let r = duplicati_get(b, "/refresh", &authid);
    assert_eq!(r.status, 503);
    assert!(r
        .header("X-Reason")
        .is_some_and(|x| x.contains("re-authorize")));
    // Provider trouble: 5xx other than 503 (Duplicati retries with backoff).
    b.mock.set_config(Config {
        fail_status: Some(500),
        ..Config::default()
    });
    let r = duplicati_get(b, "/refresh", &other);
    assert_eq!(r.status, 502);
    assert!(r.header("X-Reason").is_some());
}

// What a Duplicati user ends up seeing when the broker refuses a token, ported
// from duplicati/duplicati@66cfb242 (the same code is in v2.2.0.3 stable). Paths
// are under `Duplicati/Library/`.

/// The backends whose answer-parsing differs.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// `Backend/Box/BoxBackend.cs:68-95`.
    Box,
    /// `Backend/Dropbox/DropboxHelper.cs:31-46,221-280`. It asks the broker only
    /// for an authid with a `:` (`:43-45`), which ours have.
    Dropbox,
    /// Google Drive, OneDrive, …: no override of
    /// `Backend/OAuthHelper/JSONWebHelperHttpClient.cs:225-228`.
    Other,
}

/// The exception Duplicati throws, its message (what the user reads), and how
/// many times it asked the broker before giving up.
#[derive(Debug)]
struct Seen {
    exception: &'static str,
    message: String,
    attempts: u32,
}

const LOGIN_ERROR: &str = "UserInformationException(OAuthLoginError)";

/// `Backend/OAuthHelper/Strings.cs:27`; `Backend/Dropbox/Strings.cs:32` is the same text.
fn authorization_failure(message: &str, login_url: &str) -> String {
    format!(
        "Failed to authorize using the OAuth service: {message}. If the problem persists, \
         try generating a new authid token from: {login_url}"
    )
}

/// `OAuthHelperHttpClient.GetAccessTokenAsync` when every attempt gets the
/// error answer `r` (`Backend/OAuthHelper/OAuthHelperHttpClient.cs:104-200`).
/// Our `X-Reason` is never blank, so the status-name fallback (`:163-164`) and
/// the over-quota branch it feeds (`:168-173`) are left out.
fn duplicati_sees(backend: Backend, r: &Resp, login_url: &str) -> Seen {
    assert!(r.status >= 400, "not an error: {}", r.status);
    let reason = r.header("X-Reason").filter(|m| !m.trim().is_empty());
    // :166-178: a 503 with X-Reason is final at the first attempt.
    if let (503, Some(msg)) = (r.status, reason) {
        return Seen {
            exception: LOGIN_ERROR,
            message: authorization_failure(msg, login_url),
            attempts: 1,
        };
    }
    // :142-151,181,189: a 4xx is asked once more, anything else five times more.
    let attempts = if (400..500).contains(&r.status) { 2 } else { 6 };
    // :183: the backend's parser may throw first.
    let parsed = match backend {
        Backend::Box => Some(box_parses(r)),
        Backend::Dropbox => Some(dropbox_parses(r, login_url)),
        Backend::Other => None,
    };
    let (exception, message) = parsed.unwrap_or_else(|| match reason {
        // :184-185
        Some(msg) => (LOGIN_ERROR, authorization_failure(msg, login_url)),
        // :186 rethrows EnsureSuccessStatusCode's HttpRequestException (:127).
        None => (
            "HttpRequestException",
            format!(
                "Response status code does not indicate success: {}",
                r.status
            ),
        ),
    });
    Seen {
        exception,
        message,
        attempts,
    }
}

/// `Backend/Box/BoxBackend.cs:78-95`: the body read as Box's `ErrorResponse`
/// (`Box/Model/ErrorResponse.cs:9-12`, Newtonsoft: a missing member keeps its
/// default, 0 or null; a value it cannot convert, or a body that is not an
/// object, throws and `:93` falls back to the raw body), shown by
/// `Box/Model/BoxException.cs:22`.
fn box_parses(r: &Resp) -> (&'static str, String) {
    if r.status == 429 {
        return ("TooManyRequestException", String::new()); // :83-84
    }
    let as_error_response = |v: serde_json::Value| {
        let o = v.as_object()?.clone();
        let status = match o.get("status") {
            None => 0,
            Some(s) => s.as_i64()?,
        };
        let text = |k: &str| match o.get(k) {
            None | Some(serde_json::Value::Null) => Some(String::new()),
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        Some((status, text("code")?, text("message")?))
    };
    let (status, code, message) = serde_json::from_str(&r.body)
        .ok()
        .and_then(as_error_response)
        .unwrap_or_else(|| (i64::from(r.status), "Unknown".into(), r.body.clone()));
    (
        "BoxException",
        format!("Box.com ErrorResponse: {status} - {code}: {message}"),
    )
}

/// `Backend/Dropbox/DropboxHelper.cs:221-280` for the token request, which is
/// not a file request (`:236`).
fn dropbox_parses(r: &Resp, login_url: &str) -> (&'static str, String) {
    let json = r.body.clone(); // :229
    match r.status {
        404 | 409 => ("FolderMissingException", json), // :241-246
        401 => (LOGIN_ERROR, authorization_failure(&json, login_url)), // :248-252
        429 | 507 => (
            "UserInformationException(DropboxOverQuotaError)",
            format!("The Dropbox account is over quota: {json}"), // :254-259
        ),
        // :263-275; the body goes to `errorJSON`, the message is fixed (:286).
        _ if serde_json::from_str::<serde_json::Value>(&json).is_ok() => {
            ("DropboxException", "Dropbox API error".into())
        }
        status => (
            "InvalidDataException",
            format!("Non-json response (code: {status}, message: <reason phrase>): {json}"), // :277
        ),
    }
}

/// Issue 13 item 4: Box and Dropbox parse the answer before Duplicati's
/// `X-Reason` logic. An unknown, wrong or revoked authid must reach their users
/// as our reason (Box) and as an authorization failure with the re-login URL
/// (Dropbox), never as "folder missing".
fn box_and_dropbox_users_see_our_reason_for_an_unknown_wrong_or_revoked_authid(b: &Broker) {
    let live = b.login();
    let (keyid, secret) = live.split_once(':').expect("a v1 authid");
    let mut wrong = secret.to_string();
    let last = wrong.pop().expect("a secret");
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let revoked = b.login();
    let enc: String = url::form_urlencoded::byte_serialize(revoked.as_bytes()).collect();
    assert_eq!(
        b.post_form("/revoked", &format!("authid={enc}")).status,
        200
    );
    let oauth_url = b.url("/refresh");
    let box_login = duplicati_login_url(&oauth_url, "box.com"); // BoxBackend.cs:72
    let dropbox_login = duplicati_login_url(&oauth_url, "dropbox"); // DropboxHelper.cs:39
    let mut reason = String::new();
    for (what, authid) in [
        ("unknown", format!("{}:{secret}", "0".repeat(32))),
        ("wrong", format!("{keyid}:{wrong}")),
        ("revoked", revoked.clone()),
    ] {
        let r = duplicati_get(b, "/refresh", &authid);
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        reason = r.header("X-Reason").expect("X-Reason").to_string();
        let seen = duplicati_sees(Backend::Box, &r, &box_login);
        assert_eq!(
            (seen.exception, seen.message.as_str(), seen.attempts),
            (
                "BoxException",
                format!("Box.com ErrorResponse: 401 - unknown_authid: {reason}").as_str(),
                2
            ),
            "{what}"
        );
        let seen = duplicati_sees(Backend::Dropbox, &r, &dropbox_login);
        assert_eq!(seen.exception, LOGIN_ERROR, "{what}: {}", seen.message);
        assert!(seen.message.contains(&reason), "{what}: {}", seen.message);
        assert!(seen.message.ends_with(&dropbox_login), "{what}");
        let seen = duplicati_sees(Backend::Other, &r, &box_login);
        assert_eq!(seen.message, authorization_failure(&reason, &box_login));
        for backend in [Backend::Box, Backend::Dropbox, Backend::Other] {
            let seen = duplicati_sees(backend, &r, &box_login);
            assert!(!seen.message.contains(secret), "{what}: secret shown");
        }
    }
    assert_eq!(b.refresh(&live).status, 200);
    // The port reproduces the bug it replaces: the old answer, a 404 with only
    // RFC 6749's pair, was "folder missing" to Dropbox and empty to Box.
    let old = Resp {
        status: 404,
        headers: vec![("X-Reason".into(), reason.clone())],
        body: serde_json::json!({"error": "unknown_authid", "error_description": reason})
            .to_string(),
    };
    let seen = duplicati_sees(Backend::Dropbox, &old, &dropbox_login);
    assert_eq!(seen.exception, "FolderMissingException");
    let seen = duplicati_sees(Backend::Box, &old, &box_login);
    assert_eq!(seen.message, "Box.com ErrorResponse: 0 - : ");
}

/// Issue 13 item 5: a D1 fault is a 500, which every backend retries five
/// times with backoff (1+2+4+8+16 s) instead of failing the backup at once, as
/// it would on a 503. Should it last, Box and the generic backends show our
/// reason; Dropbox shows only "Dropbox API error" (`DropboxHelper.cs:274-275,286`).
fn a_brief_d1_outage_is_retried_by_every_duplicati_backend(b: &Broker) {
    let authid = b.login();
    b.d1("ALTER TABLE grants RENAME TO grants_moved");
    let r = duplicati_get(b, "/refresh", &authid);
    b.d1("ALTER TABLE grants_moved RENAME TO grants");
    assert_eq!(r.status, 500, "{}", r.body);
    let reason = r.header("X-Reason").expect("X-Reason").to_string();
    let login = duplicati_login_url(&b.url("/refresh"), "box.com");
    for backend in [Backend::Box, Backend::Dropbox, Backend::Other] {
        let seen = duplicati_sees(backend, &r, &login);
        assert_eq!(seen.attempts, 6, "{backend:?}: retried, not final");
    }
    assert_eq!(
        duplicati_sees(Backend::Box, &r, &login).message,
        format!("Box.com ErrorResponse: 500 - storage_unavailable: {reason}")
    );
    assert_eq!(
        duplicati_sees(Backend::Other, &r, &login).message,
        authorization_failure(&reason, &login)
    );
    // The same answer as a 503 would have failed the backup at the first try.
    let as_503 = Resp {
        status: 503,
        headers: r.headers.clone(),
        body: r.body.clone(),
    };
    assert_eq!(
        duplicati_sees(Backend::Dropbox, &as_503, &login).attempts,
        1
    );
    assert_eq!(
        duplicati_refresh_status(b, &authid),
        200,
        "the outage is over"
    );
}

fn duplicati_refresh_status(b: &Broker, authid: &str) -> u16 {
    duplicati_get(b, "/refresh", authid).status
}

/// Duplicati's login URL: the oauth-url's scheme, userinfo, host and port, the
/// path dropped, the query kept, `type=<id>` appended.
fn duplicati_login_url(oauth_url: &str, id: &str) -> String {
    let u = url::Url::parse(oauth_url).expect("oauth url");
    let mut s = format!("{}://", u.scheme());
    if !u.username().is_empty() {
        s.push_str(u.username());
        if let Some(p) = u.password() {
            s.push(':');
            s.push_str(p);
        }
        s.push('@');
    }
    s.push_str(u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        s.push_str(&format!(":{p}"));
    }
    match u.query() {
        Some(q) => s.push_str(&format!("?{q}&type={id}")),
        None => s.push_str(&format!("?type={id}")),
    }
    s
}

fn duplicati_login_url_derivation_lands_on_the_filtered_index(b: &Broker) {
    assert_eq!(
        duplicati_login_url("https://example.com/refresh?a=b", "box.com"),
        "https://example.com?a=b&type=box.com"
    );
    assert_eq!(
        duplicati_login_url("https://u:p@example.com:8443/x/refresh", "dropbox"),
        "https://u:p@example.com:8443?type=dropbox"
    );
    for oauth_url in [
        format!("{}/refresh", b.base),
        format!("{}/refresh?a=b", b.base),
    ] {
        let login = duplicati_login_url(&oauth_url, "demo");
        let r = request("GET", &login, &[("User-Agent", UA)], None);
        assert_eq!(r.status, 200, "{login}");
        assert!(r.body.contains("login-demo"));
        assert!(!r.body.contains("login-box.com"), "filtered to the type");
    }
}

fn new_ui_refresh_type_redirects_to_the_index(b: &Broker) {
    let r = b.get("/refresh?type=box.com");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("Location"),
        Some(format!("{}/?type=box.com", b.base).as_str())
    );
    let index = request("GET", r.header("Location").unwrap_or(""), &[], None);
    assert!(index.body.contains("login-box.com"));
}

fn jsonp_of(body: &str, callback: &str) -> serde_json::Value {
    let prefix = format!("/**/ {callback}(");
    let inner = body
        .strip_prefix(&prefix)
        .and_then(|s| s.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not JSONP for {callback}: {body}"));
    serde_json::from_str(inner).expect("JSON inside JSONP")
}

/// The question the result page asks before the old UI may collect the authid.
const ASK: &str = "Send this authorization to the Duplicati window that opened this page?";

/// The hand-off's browser cookie (`oauth_broker::handoff::BINDING_COOKIE`).
const BINDING: &str = "__Host-broker-handoff";

/// Duplicati's old UI, end to end: it opens `/?type=demo&token=<t>` in a popup
/// and polls `/fetch` by JSONP (cross-site, so without the broker's cookies);
/// the user logs in, sees the authid, and clicks "Send to Duplicati" once.
fn old_ui_token_and_jsonp_fetch_hand_off_the_authid_once(b: &Broker) {
    let token = duplicati_token();
    let mut popup = Jar::default();
    let index = b.get_in(&mut popup, &format!("/?type=demo&token={token}"));
    assert_eq!(index.status, 200);
    assert!(
        popup.get(BINDING).is_some(),
        "the index binds the token to this browser"
    );
    let fetch = |cb: &str| b.get(&format!("/fetch?callback={cb}&token={token}"));
    let waiting = fetch("JSON_CALLBACK");
    assert_eq!(waiting.status, 200);
    assert_eq!(
        waiting.header("Content-Type"),
        Some("application/javascript")
    );
    assert_eq!(
        jsonp_of(&waiting.body, "JSON_CALLBACK"),
        serde_json::json!({"wait": "Not ready"})
    );
    // The index's button carries the token on to /login.
    let href = format!("/login?id=demo&amp;token={token}");
    assert!(index.body.contains(&href), "button passes the token on");
    let (page, _) = b.login_in(&mut popup, &format!("/login?id=demo&token={token}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = extract_authid(&page.body).expect("the authid is shown for copy/paste");
    b.remember(&authid);
    assert!(page.body.contains(ASK), "the result page asks first");
    // Until the user says so, Duplicati's poll waits.
    let unconfirmed = fetch("angular.callbacks._0");
    assert_eq!(
        jsonp_of(&unconfirmed.body, "angular.callbacks._0"),
        serde_json::json!({"wait": "Not ready"})
    );
    let state = b.get(&format!("/token-state?token={token}")).json();
    assert_eq!(state, serde_json::json!({"success": false}));
    let confirm = extract_confirm(&page.body).expect("the confirmation form");
    let sent = b.post_form_in(&mut popup, "/handoff", &format!("confirm={confirm}"));
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("Sent to Duplicati") && !sent.body.contains(&authid));
    let got = fetch("angular.callbacks._1");
    assert_eq!(
        jsonp_of(&got.body, "angular.callbacks._1")["authid"],
        authid.as_str()
    );
    assert_eq!(got.header("Cache-Control"), Some("no-store"));
    let again = b.get(&format!("/fetch?token={token}")).json();
    assert_eq!(again, serde_json::json!({"error": "No such entry"}));
    let state = b.get(&format!("/token-state?token={token}")).json();
    assert_eq!(state, serde_json::json!({"success": true}));
    assert_eq!(
        b.get("/fetch").json(),
        serde_json::json!({"error": "Missing token"})
    );
    assert_eq!(
        b.get(&format!("/fetch?token={}", duplicati_token())).json(),
        serde_json::json!({"error": "No such entry"})
    );
    assert_eq!(b.refresh(&authid).status, 200);
}

/// The status and `X-Error-Code` of an answer, for one-line asserts.
fn refusal(r: &Resp) -> (u16, Option<&str>) {
    (r.status, r.header("X-Error-Code"))
}

/// Issue 6 (login CSRF on the old-UI hand-off): a link carrying a fetch token
/// the attacker chose must never let `/fetch` hand the attacker the authid of
/// the victim who opens it.
fn an_attacker_chosen_fetch_token_yields_nothing(b: &Broker) {
    let mut attacker = Jar::default();
    let mut victim = Jar::default();

    // 1. The attacker registers a token and sends the victim a login link with it.
    let t1 = duplicati_token();
    assert_eq!(
        b.get_in(&mut attacker, &format!("/?type=demo&token={t1}"))
            .status,
        200
    );
    let link = b.get_in(&mut victim, &format!("/login?id=demo&token={t1}"));
    assert_eq!(
        refusal(&link),
        (400, Some("unregistered_token")),
        "{}",
        link.body
    );
    assert!(link.header("Location").is_none(), "no login starts");
    // ...or the index link Duplicati itself would open: the token is taken.
    let index = b.get_in(&mut victim, &format!("/?type=demo&token={t1}"));
    assert_eq!(refusal(&index), (409, Some("token_in_use")));

    // 2. A token nobody registered: a login link with it is refused as well.
    let t2 = duplicati_token();
    let link = b.get_in(&mut Jar::default(), &format!("/login?id=demo&token={t2}"));
    assert_eq!(refusal(&link), (400, Some("unregistered_token")));

    // 3. The victim is sent to the index with a token the attacker chose (so the
    // victim's browser registers it) and logs in: the authid is the victim's to
    // copy, but it goes nowhere without the victim's own click.
    let t3 = duplicati_token();
    let (page, _) = b.handoff_login_in(&mut victim, &t3);
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = extract_authid(&page.body).expect("the victim still gets the authid");
    b.remember(&authid);
    assert!(page.body.contains(ASK));
    // The attacker cannot click in the victim's place: not with a made-up
    // confirmation, and not even with the page's own, from another browser.
    let made_up = format!("confirm={}", "A".repeat(43));
    let forged = b.post_form_in(&mut attacker, "/handoff", &made_up);
    assert_eq!(refusal(&forged), (400, Some("invalid_confirmation")));
    let confirm = extract_confirm(&page.body).expect("the confirmation form");
    let stolen = b.post_form_in(&mut attacker, "/handoff", &format!("confirm={confirm}"));
    assert_eq!(refusal(&stolen), (400, Some("invalid_confirmation")));

    for (t, want) in [
        (&t1, serde_json::json!({"wait": "Not ready"})),
        (&t2, serde_json::json!({"error": "No such entry"})),
        (&t3, serde_json::json!({"wait": "Not ready"})),
    ] {
        let polled = b.get(&format!("/fetch?token={t}"));
        assert!(
            !polled.body.contains(&authid),
            "the authid leaked through /fetch"
        );
        assert_eq!(polled.json(), want);
        let jsonp = b.get(&format!("/fetch?callback=cb&token={t}"));
        assert!(!jsonp.body.contains(&authid));
    }
    assert_eq!(b.refresh(&authid).status, 200, "the victim's grant is fine");
}

/// The "Send to Duplicati" form: its token works once, only from the browser
/// that registered the hand-off, only while fresh; what it refuses it leaves
/// usable. Then `/fetch` (JSON) hands the authid out once.
fn the_confirmation_is_single_use_and_bound_to_the_registering_browser(b: &Broker) {
    let token = duplicati_token();
    let mut popup = Jar::default();
    let (page, _) = b.handoff_login_in(&mut popup, &token);
    let authid = extract_authid(&page.body).expect("authid");
    b.remember(&authid);
    let confirm = extract_confirm(&page.body).expect("the confirmation form");
    let body = format!("confirm={confirm}");
    // Another browser, with a hand-off binding of its own, or with none at all.
    let mut other = Jar::default();
    assert_eq!(
        b.get_in(&mut other, &format!("/?token={}", duplicati_token()))
            .status,
        200
    );
    let refused = [
        b.post_form_in(&mut other, "/handoff", &body),
        b.post_form_in(&mut Jar::default(), "/handoff", &body),
        b.post_form_in(
            &mut popup,
            "/handoff",
            &format!("confirm={}", "B".repeat(43)),
        ),
        b.post_form_in(&mut popup, "/handoff", "confirm=short"),
        b.post_form_in(&mut popup, "/handoff", ""),
    ];
    for r in &refused {
        assert_eq!(
            refusal(r),
            (400, Some("invalid_confirmation")),
            "{}",
            r.body
        );
        assert!(r
            .header("Content-Type")
            .unwrap_or("")
            .starts_with("text/html"));
    }
    // Expired: refused; fresh again, accepted (the refusal consumed nothing).
    let h = oauth_broker::handoff::token_hash(&token);
    let set_deadline = |t: i64| {
        b.d1(&format!(
            "UPDATE fetch_tokens SET confirm_expires_at = {t} WHERE token_hash = '{h}'"
        ))
    };
    set_deadline(1);
    let late = b.post_form_in(&mut popup, "/handoff", &body);
    assert_eq!(refusal(&late), (400, Some("invalid_confirmation")));
    assert_eq!(
        b.get(&format!("/fetch?token={token}")).json(),
        serde_json::json!({"wait": "Not ready"})
    );
    set_deadline(4_102_444_800);
    let sent = b.post_form_in(&mut popup, "/handoff", &body);
    assert_eq!(sent.status, 200, "{}", sent.body);
    let twice = b.post_form_in(&mut popup, "/handoff", &body);
    assert_eq!(refusal(&twice), (400, Some("invalid_confirmation")));
    let got = b.get(&format!("/fetch?token={token}"));
    assert_eq!(got.header("Content-Type"), Some("application/json"));
    assert_eq!(got.json(), serde_json::json!({"authid": authid}));
    assert_eq!(
        b.get(&format!("/fetch?token={token}")).json(),
        serde_json::json!({"error": "No such entry"})
    );
}

/// Fetch tokens must carry 64 bits (`oauth_broker::handoff::MIN_TOKEN_BITS`):
/// short or regular ones are a clear 400 `bad_token` where they would register
/// or start a login, and name no entry at `/fetch`; Duplicati's real ones pass.
fn short_fetch_tokens_are_refused(b: &Broker) {
    for t in [
        "abc",
        "tok12345",
        "0123456789ab",        // 12 base-36 chars: 62 bits
        "0123456789abcde",     // 15 hex chars: 60 bits
        "1234567890123456789", // 19 digits: 63 bits
        "abababababababababababab",
    ] {
        for path in [
            format!("/?type=demo&token={t}"),
            format!("/login?id=demo&token={t}"),
        ] {
            let r = b.get(&path);
            assert_eq!(refusal(&r), (400, Some("bad_token")), "{path}");
            assert!(r
                .header("X-Reason")
                .is_some_and(|x| x.contains("64 random bits")));
            assert!(
                r.header("Set-Cookie").is_none(),
                "{path}: nothing registered"
            );
        }
        assert_eq!(
            b.get(&format!("/fetch?token={t}")).json(),
            serde_json::json!({"error": "No such entry"})
        );
    }
    for _ in 0..3 {
        let t = duplicati_token();
        let r = b.get(&format!("/?type=demo&token={t}"));
        assert_eq!(r.status, 200, "Duplicati's token {t}");
    }
}

/// A login whose authid would go to Duplicati's window asks the provider for
/// consent (the demo provider, like any operator-defined one, `prompt=consent`),
/// so nobody is logged in silently through a link; a plain login does not.
fn a_login_with_a_pending_hand_off_asks_the_provider_for_consent(b: &Broker) {
    let prompt = |location: &str| {
        url::Url::parse(location)
            .expect("authorize URL")
            .query_pairs()
            .find(|(k, _)| k == "prompt")
            .map(|(_, v)| v.into_owned())
    };
    let token = duplicati_token();
    let mut popup = Jar::default();
    let (page, authorize) = b.handoff_login_in(&mut popup, &token);
    assert_eq!(prompt(&authorize).as_deref(), Some("consent"));
    assert_eq!(page.status, 200, "the mock accepts the consent parameter");
    b.remember(&extract_authid(&page.body).expect("authid"));
    let plain = b.get("/login?id=demo");
    assert_eq!(plain.status, 302);
    assert_eq!(prompt(plain.header("Location").unwrap_or("")), None);
}

fn jsonp_callback_injection_is_refused(b: &Broker) {
    for cb in ["alert(1)//", "a%3Bb", "%3Cscript%3E", "a.b(c)", "x%0Ay"] {
        let r = b.get(&format!("/fetch?callback={cb}&token=t"));
        assert_eq!(r.status, 400, "{cb}");
        assert_eq!(r.json()["error"], "bad_callback");
        assert!(!r.body.contains("alert(") && !r.body.contains("<script>"));
    }
}

/// The cookie pair the index sets from a `Referer` (the popup's first request
/// names its opener): the hint the result page posts to.
fn opener_hint(b: &Broker, path: &str, referer: &str) -> String {
    let index = b.get_with(path, &[("Referer", referer)]);
    assert_eq!(index.status, 200);
    index
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .find(|c| c.starts_with("__Host-broker-opener="))
        .expect("the index sets or clears the opener hint")
        .to_string()
}

/// A login from `/login?id=<provider>` whose browser carries `hint`; the result page.
fn login_with_hint(b: &Broker, provider: &str, hint: &str) -> (Resp, String) {
    let (callback, cookie) = b.login_to_callback(&format!("/login?id={provider}"));
    let page = request(
        "GET",
        &callback,
        &[("Cookie", &format!("{cookie}; {hint}"))],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = extract_authid(&page.body).expect("authid");
    b.remember(&authid);
    (page, authid)
}

fn new_ui_result_page_posts_to_allowlisted_origins_only(b: &Broker) {
    // Duplicati on a non-default port: by default any loopback port is allowed.
    let hint = opener_hint(
        b,
        "/?type=demo",
        "http://127.0.0.1:8300/ngclient/index.html",
    );
    assert_eq!(hint, "__Host-broker-opener=http://127.0.0.1:8300");
    let (page, authid) = login_with_hint(b, "demo", &hint);
    assert!(page.body.contains(
        "data-origins=\"http://localhost:8200 http://127.0.0.1:8200 http://127.0.0.1:8300\""
    ));
    assert!(
        page.header("Set-Cookie").is_some(),
        "the callback clears its cookies"
    );
    // A non-loopback opener: the hint is cleared; only Duplicati's default port
    // is posted to (the browser delivers nothing there to this opener).
    let hint = opener_hint(b, "/?type=demo", "https://evil.example/page");
    assert_eq!(hint, "__Host-broker-opener=");
    let (other, _) = login_with_hint(b, "demo", &hint);
    assert!(other
        .body
        .contains("data-origins=\"http://localhost:8200 http://127.0.0.1:8200\""));
    // Even a hint cookie that was never set by the index is checked again.
    let (forged, _) = login_with_hint(b, "demo", "__Host-broker-opener=https://evil.example");
    assert!(forged
        .body
        .contains("data-origins=\"http://localhost:8200 http://127.0.0.1:8200\""));
    // pCloud's authid (its access token, no `:`) is posted like any other.
    let hint = opener_hint(b, "/?type=pcloud", "http://localhost:8989/");
    let (pcloud, token) = login_with_hint(b, "pcloud", &hint);
    assert!(!token.contains(':'));
    assert!(pcloud.body.contains(
        "data-origins=\"http://localhost:8200 http://127.0.0.1:8200 http://localhost:8989\""
    ));
    assert!(!pcloud.body.contains("indexOf(':')"));
    assert!(page
        .body
        .contains("window.opener.postMessage('authid:'+v,o)"));
    // The authid is not inside the script, and the script is allowed by hash only.
    let script = &page.body[page.body.find("<script>").expect("script")..];
    assert!(!script.contains(&authid));
    let csp = page.header("Content-Security-Policy").expect("CSP");
    assert!(csp.contains("script-src 'sha256-"));
    // An error page never carries an authid for the opener.
    let (callback, cookie) = b.start_login_to_callback();
    let first = request("GET", &callback, &[("Cookie", &cookie)], None);
    b.remember(&extract_authid(&first.body).expect("authid"));
    let replay = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert!(!replay.body.contains("postMessage") && extract_authid(&replay.body).is_none());
}

fn duplicati_provider_ids_and_box_alias_work(b: &Broker) {
    let index = b.get("/?type=box");
    assert!(index.body.contains("login-box.com"), "alias box → box.com");
    let authid = b.login_at("/login?id=box");
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["type"], "box.com");
    // (Not jottacloud: a public client, offered without a secret.)
    let r = b.get("/login?id=dropbox");
    assert_eq!(r.status, 404, "unconfigured provider ids are refused");
}

fn pcloud_login_shows_the_access_token_as_authid_and_stores_nothing(b: &Broker) {
    let rows = || b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"].as_i64();
    let before = rows();
    let authid = b.login_at("/login?id=pcloud");
    assert!(
        !authid.contains(':'),
        "Duplicati treats it as a raw access token"
    );
    assert!(b.provider_issued(&authid));
    assert_eq!(rows(), before, "nothing stored");
}

/// pCloud's callback names the account's API host; an EU account's code is
/// exchanged at `eapi.pcloud.com` (here: the mock's `/eu/token`, through the
/// test's `token_hosts` override), and the page says which region it is.
fn pcloud_eu_callback_exchanges_at_the_eu_host_and_the_page_names_the_region(b: &Broker) {
    b.mock.set_config(Config {
        region: Some(Region::Eu),
        ..Config::default()
    });
    let (callback, cookie) = b.login_to_callback("/login?id=pcloud");
    assert!(callback.contains("hostname=eapi.pcloud.com&locationid=2"));
    let page = request("GET", &callback, &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = extract_authid(&page.body).expect("authid");
    b.remember(&authid);
    assert!(b.provider_issued(&authid));
    assert_eq!(b.mock.stats().wrong_region_exchanges, 0);
    assert!(page
        .body
        .contains("Region: <strong>EU</strong> (<code>eapi.pcloud.com</code>)"));
}

/// A `hostname` outside pCloud's two API hosts is refused before any exchange:
/// the callback's value selects a configured endpoint, it is never fetched.
fn pcloud_callback_naming_an_unknown_host_is_refused_and_nothing_is_fetched(b: &Broker) {
    b.mock.set_config(Config {
        region: Some(Region::Eu),
        ..Config::default()
    });
    let (callback, cookie) = b.login_to_callback("/login?id=pcloud");
    let forged = callback.replace("hostname=eapi.pcloud.com", "hostname=127.0.0.1%3A9");
    assert_ne!(forged, callback);
    let before = b.mock.stats().token_calls;
    let page = request("GET", &forged, &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("region"), "{}", page.body);
    assert!(extract_authid(&page.body).is_none());
    assert_eq!(
        b.mock.stats().token_calls,
        before,
        "nothing was sent upstream"
    );
}

fn v2_authid_survives_five_single_use_rotations_and_stores_nothing(b: &Broker) {
    let rows_before = b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"].as_i64();
    let index = b.get("/?tokenversion=2");
    assert!(index.body.contains("tokenversion=2"));
    let mut authid = b.login_at("/login?id=demo&tokenversion=2");
    assert!(authid.starts_with("v2:demo:"), "v2 authid shown");
    let rows_after = b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"].as_i64();
    assert_eq!(rows_before, rows_after, "nothing stored");
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        ..Config::default()
    });
    b.mock.reset_stats();
    for i in 0..5 {
        let r = duplicati_get(b, "/refresh", &authid);
        assert_eq!(r.status, 200, "refresh {i}: {}", r.body);
        let v = r.json();
        let next = v["v2_authid"].as_str().expect("v2_authid").to_string();
        assert_ne!(next, authid, "the rotated refresh token, not the spent one");
        assert!(next.starts_with("v2:demo:"));
        b.remember(&next);
        authid = next;
    }
    let s = b.mock.stats();
    assert_eq!(s.refresh_calls, 5);
    assert_eq!(s.spent_refresh_reuse, 0);
}

fn export_from_one_broker_imports_into_another(b: &Broker) {
    let authid = b.login();
    let headers = [("X-APIKey", ADMIN_API_KEY), ("X-AuthID", authid.as_str())];
    let exported = b.get_with("/export", &headers);
    assert_eq!(exported.status, 200, "{}", exported.body);
    assert_eq!(exported.header("Cache-Control"), Some("no-store"));
    let v = exported.json();
    assert_eq!(v["service"], "demo");
    assert!(v["refresh_token"].is_string());
    // A second broker with its own D1 (same mock provider and client).
    let second = Broker::start_with_mock(&b.mock);
    let imported = request(
        "POST",
        &second.url("/import"),
        &[
            ("X-APIKey", ADMIN_API_KEY),
            ("X-AuthID", authid.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(&exported.body),
    );
    assert_eq!(imported.status, 200, "{}", imported.body);
    b.mock.reset_stats();
    let r = second.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        b.mock.stats().refresh_calls,
        1,
        "first use on the new broker refreshes"
    );
    // The grant has been refreshed here: importing the (now spent) export
    // again would lose it, so it is refused (tests/e2e/moving.rs shows the
    // overwrite an import not yet refreshed allows).
    let dup = request(
        "POST",
        &second.url("/import"),
        &[("X-APIKey", ADMIN_API_KEY), ("X-AuthID", authid.as_str())],
        Some(&exported.body),
    );
    assert_eq!(dup.status, 409, "{}", dup.body);
    assert_eq!(dup.json()["error"], "grant_in_use");
    assert_eq!(
        second.refresh(&authid).status,
        200,
        "and the grant still works"
    );
}

fn export_and_import_refuse_without_a_valid_api_key(b: &Broker) {
    let authid = b.login();
    for key in [None, Some("wrong"), Some("")] {
        let mut h = vec![("X-AuthID", authid.as_str())];
        if let Some(k) = key {
            h.push(("X-APIKey", k));
        }
        let r = b.get_with("/export", &h);
        assert_eq!(r.status, 403, "{key:?}");
        assert!(!r.body.contains("refresh_token"));
        let r = request("POST", &b.url("/import"), &h, Some("{}"));
        assert_eq!(r.status, 403);
    }
}
