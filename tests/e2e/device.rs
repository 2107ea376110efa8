//! The device authorization grant (RFC 8628) against the real worker, over
//! plain HTTP: the device's request, the verification page (code, provider,
//! click, provider login, "return to your device"), every polling answer at
//! the token endpoint, expiry, single use, denial, and wrong and guessed user
//! codes (rate-limited per IP).

use std::process::Command;

use oauth_broker::digest::sha256_hex;
use serde_json::Value;

use crate::harness::{
    enc, in_one_rate_limit_window, refresh_at_token_endpoint, request, token_endpoint, Broker, Jar,
    Resp,
};

pub const TESTS: &[crate::Test] = tests![
    device_authorization_answers_every_rfc_8628_field_and_stores_only_hashes,
    device_login_polls_pending_then_slow_down_then_once_the_authid,
    device_login_refused_by_the_user_or_the_provider_answers_access_denied,
    device_code_past_its_expiry_answers_expired_token,
    device_verification_refuses_wrong_codes_and_rate_limits_guessing,
    device_confirmation_needs_the_browser_that_saw_the_provider,
    device_login_with_curl_over_plain_http,
    front_door_logins_behind_an_access_gate_need_the_key_and_keep_it,
];

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// `POST /oauth/device_authorization client_id=<client_id>`.
fn start(b: &Broker, client_id: &str) -> Resp {
    request(
        "POST",
        &b.url("/oauth/device_authorization"),
        &[FORM],
        Some(&format!("client_id={}", enc(client_id))),
    )
}

/// A started device login for `demo`: the §3.2 answer; its secrets remembered
/// for the leak scans.
pub fn device_start(b: &Broker) -> Value {
    let r = start(b, "demo");
    assert_eq!(r.status, 200, "device_authorization: {}", r.body);
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let v = r.json();
    b.remember(v["device_code"].as_str().expect("device_code"));
    let user_code = v["user_code"].as_str().expect("user_code");
    b.remember(user_code);
    b.remember(&user_code.replace('-', ""));
    v
}

/// One poll at the token endpoint `token` (discovered once per test).
pub fn poll(token: &str, device_code: &str, client_id: &str) -> Resp {
    request(
        "POST",
        token,
        &[FORM],
        Some(&format!(
            "grant_type={}&device_code={}&client_id={}",
            enc(DEVICE_GRANT),
            enc(device_code),
            enc(client_id)
        )),
    )
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// The browser on the verification page from `ip`: POSTs `body` to /device
/// with the jar's cookies, keeping what it sets.
pub fn post_device(b: &Broker, jar: &mut Jar, ip: &str, body: &str) -> Resp {
    let cookie = jar.header();
    let mut headers = vec![FORM, ("CF-Connecting-IP", ip)];
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie.as_str()));
    }
    let r = request("POST", &b.url("/device"), &headers, Some(body));
    jar.keep(&r);
    r
}

/// The link `id` (`approve` or `deny`) on the verification page's second step.
pub fn link(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\" href=\"");
    let start = html.find(&marker).expect("a decision link") + marker.len();
    let end = html[start..].find('"').expect("end of href") + start;
    html[start..end].replace("&amp;", "&")
}

/// The browser follows `href` (a link on the broker's page) from `ip`.
fn follow(b: &Broker, jar: &mut Jar, ip: &str, href: &str) -> Resp {
    let cookie = jar.header();
    let mut headers = vec![("CF-Connecting-IP", ip)];
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie.as_str()));
    }
    let r = request("GET", &b.url(href), &headers, None);
    jar.keep(&r);
    r
}

/// The user types `typed` on the verification page from `ip`, sees the
/// provider, and clicks `decision` (`approve` or `deny`): the answer to that click.
fn decide(b: &Broker, jar: &mut Jar, ip: &str, typed: &str, decision: &str) -> Resp {
    let form = b.get(&format!("/device?user_code={}", enc(typed)));
    assert_eq!(form.status, 200);
    assert!(
        form.body.contains(&format!("value=\"{typed}\"")),
        "prefilled"
    );
    let ask = post_device(b, jar, ip, &format!("user_code={}", enc(typed)));
    assert_eq!(ask.status, 200, "code check: {}", ask.body);
    assert!(ask.body.contains("Demo provider"), "names the provider");
    follow(b, jar, ip, &link(&ask.body, decision))
}

/// The user approves `user_code` (typed as given) from `ip` and logs in at
/// the mock provider: the callback's page.
pub fn approve(b: &Broker, ip: &str, typed: &str) -> Resp {
    let mut jar = Jar::default();
    let go = decide(b, &mut jar, ip, typed, "approve");
    assert_eq!(go.status, 302, "the click starts the login: {}", go.body);
    let authorize = go.header("Location").expect("Location").to_string();
    assert!(authorize.starts_with(&b.mock.base_url()));
    let consent = request("GET", &authorize, &[], None);
    assert_eq!(consent.status, 302, "mock authorize");
    let callback = consent.header("Location").expect("callback").to_string();
    b.get_in(
        &mut jar,
        callback.strip_prefix(&b.base).expect("to the broker"),
    )
}

fn device_authorization_answers_every_rfc_8628_field_and_stores_only_hashes(b: &Broker) {
    let v = device_start(b);
    let device_code = v["device_code"].as_str().expect("device_code");
    assert!(device_code.len() >= 43, "at least 256 bits");
    let user_code = v["user_code"].as_str().expect("user_code");
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code
        .chars()
        .filter(|c| *c != '-')
        .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
    assert_eq!(v["verification_uri"], b.url("/device"));
    assert_eq!(
        v["verification_uri_complete"],
        b.url(&format!("/device?user_code={user_code}"))
    );
    assert_eq!(v["expires_in"], 600);
    assert_eq!(v["interval"], 5);
    let h = sha256_hex(&format!("oauth-broker/v1/device-code|{device_code}"));
    let row = b.d1(&format!(
        "SELECT * FROM device_codes WHERE device_code_hash = '{h}'"
    ));
    let text = row.to_string();
    assert_eq!(row[0]["status"], "pending", "{text}");
    assert_eq!(row[0]["provider"], "demo");
    assert!(!text.contains(device_code) && !text.contains(&user_code.replace('-', "")));
    // RFC 6749 §5.2 errors for a bad client.
    for (client, status, error) in [
        ("nope", 401, "invalid_client"),
        ("", 400, "invalid_request"),
        ("jottacloud", 400, "unauthorized_client"),
    ] {
        let r = start(b, client);
        assert_eq!(r.status, status, "{client}: {}", r.body);
        assert_eq!(error_of(&r), error, "{client}");
    }
}

fn device_login_polls_pending_then_slow_down_then_once_the_authid(b: &Broker) {
    let token = token_endpoint(b);
    let v = device_start(b);
    let device_code = v["device_code"].as_str().expect("device_code");
    let user_code = v["user_code"].as_str().expect("user_code");
    let first = poll(&token, device_code, "demo");
    assert_eq!(first.status, 400, "{}", first.body);
    assert_eq!(error_of(&first), "authorization_pending");
    // At once again: faster than the 5-second interval. Two local requests
    // take far less than 5 s; should a loaded machine stall past that, the
    // poll was a paced one (pending) and the next one at once is the test.
    let mut fast = poll(&token, device_code, "demo");
    for _ in 0..3 {
        if error_of(&fast) != "authorization_pending" {
            break;
        }
        println!("    (a poll took over 5 s to follow the previous one; polling again at once)");
        fast = poll(&token, device_code, "demo");
    }
    assert_eq!(error_of(&fast), "slow_down", "{}", fast.body);
    let h = sha256_hex(&format!("oauth-broker/v1/device-code|{device_code}"));
    let row = b.d1(&format!(
        "SELECT poll_interval FROM device_codes WHERE device_code_hash = '{h}'"
    ));
    assert_eq!(
        row[0]["poll_interval"], 10,
        "the interval grew by 5 s for good"
    );
    // Another client cannot collect it.
    let other = poll(&token, device_code, "box.com");
    assert_eq!(error_of(&other), "invalid_grant");
    // The user types the code in lower case without the dash.
    let typed = user_code.replace('-', "").to_ascii_lowercase();
    let done = approve(b, "198.51.100.21", &typed);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Return to your"), "{}", done.body);
    // Approved: the next poll gets the tokens, however soon.
    let got = poll(&token, device_code, "demo");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("Cache-Control"), Some("no-store"));
    let t = got.json();
    assert!(t["access_token"]
        .as_str()
        .is_some_and(|a| a.starts_with("mockAT_")));
    let authid = b.remember_refresh_token(&t);
    assert!(authid.contains(':') && !authid.starts_with("v2:"));
    let refreshed = refresh_at_token_endpoint(b, &authid);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(b.refresh(&authid).status, 200);
    // Single use: the device code is spent, its sealed answer wiped (the
    // row stays, `collected`, until the purge: docs/storage.md).
    let again = poll(&token, device_code, "demo");
    assert_eq!(again.status, 400);
    assert_eq!(error_of(&again), "invalid_grant");
    let rows = b.d1(&format!(
        "SELECT COUNT(*) AS n, SUM(ciphertext IS NULL AND nonce IS NULL) AS wiped \
         FROM device_codes WHERE device_code_hash = '{h}' AND status = 'collected'"
    ));
    assert_eq!(rows[0]["n"], 1);
    assert_eq!(rows[0]["wiped"], 1);
}

fn device_login_refused_by_the_user_or_the_provider_answers_access_denied(b: &Broker) {
    let token = token_endpoint(b);
    // The user clicks "Deny".
    let v = device_start(b);
    let mut jar = Jar::default();
    let user_code = v["user_code"].as_str().expect("user_code");
    let denied = decide(b, &mut jar, "198.51.100.22", user_code, "deny");
    assert_eq!(denied.status, 200, "{}", denied.body);
    assert!(denied.body.contains("not authorized"));
    let device_code = v["device_code"].as_str().expect("device_code");
    let r = poll(&token, device_code, "demo");
    assert_eq!(error_of(&r), "access_denied", "{}", r.body);
    assert_eq!(
        error_of(&poll(&token, device_code, "demo")),
        "access_denied"
    );
    // The provider refuses.
    b.mock.set_config(mock_provider::Config {
        deny: true,
        ..mock_provider::Config::default()
    });
    let v = device_start(b);
    let page = approve(
        b,
        "198.51.100.22",
        v["user_code"].as_str().expect("user_code"),
    );
    assert!(page.body.contains("not authorized"), "{}", page.body);
    let r = poll(
        &token,
        v["device_code"].as_str().expect("device_code"),
        "demo",
    );
    assert_eq!(error_of(&r), "access_denied", "{}", r.body);
}

fn device_code_past_its_expiry_answers_expired_token(b: &Broker) {
    let token = token_endpoint(b);
    let v = device_start(b);
    let device_code = v["device_code"].as_str().expect("device_code");
    let h = sha256_hex(&format!("oauth-broker/v1/device-code|{device_code}"));
    b.d1(&format!(
        "UPDATE device_codes SET expires_at = 1000 WHERE device_code_hash = '{h}'"
    ));
    let r = poll(&token, device_code, "demo");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(error_of(&r), "expired_token");
    // Its user code no longer opens the verification step.
    let mut jar = Jar::default();
    let user_code = v["user_code"].as_str().expect("user_code");
    let r = post_device(
        b,
        &mut jar,
        "198.51.100.23",
        &format!("user_code={user_code}"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("X-Error-Code"), Some("unknown_user_code"));
    // A code nobody issued is invalid_grant, not pending.
    assert_eq!(
        error_of(&poll(&token, "never-issued", "demo")),
        "invalid_grant"
    );
}

fn device_verification_refuses_wrong_codes_and_rate_limits_guessing(b: &Broker) {
    let mut jar = Jar::default();
    let ip = "203.0.113.88";
    let shape = post_device(b, &mut jar, ip, "user_code=ABCD-EFGH");
    assert_eq!(shape.status, 400);
    assert_eq!(shape.header("X-Error-Code"), Some("invalid_user_code"));
    assert!(shape
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("text/html"));
    // Guessing from one address: refused, then rate-limited (10 a minute).
    let limited_after = in_one_rate_limit_window(|| {
        let ip = "203.0.113.89";
        for i in 1..=30 {
            let r = post_device(b, &mut Jar::default(), ip, "user_code=BCDF-GHJK");
            match r.status {
                400 => assert_eq!(r.header("X-Error-Code"), Some("unknown_user_code")),
                429 => {
                    assert!(r.header("Retry-After").is_some());
                    return i;
                }
                other => panic!("guess {i}: {other} {}", r.body),
            }
        }
        panic!("30 guesses from one address were never rate-limited")
    });
    assert!(limited_after <= 11, "limited after {limited_after} guesses");
    // Another address still gets through with a real code.
    let v = device_start(b);
    let r = post_device(
        b,
        &mut Jar::default(),
        "203.0.113.90",
        &format!("user_code={}", v["user_code"].as_str().expect("user_code")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

fn device_confirmation_needs_the_browser_that_saw_the_provider(b: &Broker) {
    let v = device_start(b);
    let user_code = v["user_code"].as_str().expect("user_code");
    let ip = "198.51.100.24";
    let mut jar = Jar::default();
    let ask = post_device(b, &mut jar, ip, &format!("user_code={user_code}"));
    let (approve, deny) = (link(&ask.body, "approve"), link(&ask.body, "deny"));
    assert!(approve.contains("decision=approve") && deny.contains("decision=deny"));
    // Another browser (a cross-site link or form carries no cookie of ours):
    // refused, nothing starts, nothing is denied.
    for href in [&approve, &deny] {
        let forged = follow(b, &mut Jar::default(), ip, href);
        assert_eq!(forged.status, 403, "{}", forged.body);
        assert_eq!(forged.header("X-Error-Code"), Some("confirmation_mismatch"));
        assert!(forged.header("Location").is_none());
    }
    // The browser that saw the provider goes on to it.
    let go = follow(b, &mut jar, ip, &approve);
    assert_eq!(go.status, 302, "{}", go.body);
    assert!(go
        .header("Location")
        .unwrap_or_default()
        .starts_with(&b.mock.base_url()));
}

/// The README's `curl` example, run: start, poll, approve in a "browser",
/// poll again.
fn device_login_with_curl_over_plain_http(b: &Broker) {
    let curl = |url: &str, data: &str| -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-d", data, url])
            .output()
            .expect("curl (Debian's curl)");
        assert!(out.status.success(), "curl failed");
        serde_json::from_slice(&out.stdout).expect("JSON from the broker")
    };
    let meta = crate::harness::metadata(b);
    let device_endpoint = meta["device_authorization_endpoint"]
        .as_str()
        .expect("device_authorization_endpoint")
        .to_string();
    let token = meta["token_endpoint"]
        .as_str()
        .expect("token_endpoint")
        .to_string();
    let v = curl(&device_endpoint, "client_id=demo");
    let device_code = v["device_code"].as_str().expect("device_code").to_string();
    let user_code = v["user_code"].as_str().expect("user_code").to_string();
    b.remember(&device_code);
    let poll_data = format!("grant_type={DEVICE_GRANT}&client_id=demo&device_code={device_code}");
    assert_eq!(curl(&token, &poll_data)["error"], "authorization_pending");
    let done = approve(b, "198.51.100.25", &user_code);
    assert_eq!(done.status, 200, "{}", done.body);
    let t = curl(&token, &poll_data);
    b.remember_refresh_token(&t);
    assert_eq!(
        t["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("bearer")
    );
    assert_eq!(curl(&token, &poll_data)["error"], "invalid_grant");
}

/// With `ACCESS_KEYS` set, the authorization endpoint and the device flow are
/// gated like `/login`; a key given as a `/k/<key>/` prefix stays in the
/// verification URI and in the page's links, so the user's browser keeps it.
fn front_door_logins_behind_an_access_gate_need_the_key_and_keep_it(shared: &Broker) {
    const KEY: &str = "front-door-gate-key";
    let w = Broker::start_gated(&shared.mock, KEY);
    // Without the key: the device's request is refused (RFC 6749 §5.2 shape),
    // the authorization endpoint asks for the key on a page, never redirects.
    let refused = start(&w, "demo");
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(error_of(&refused), "invalid_client");
    let page = w.get(&format!(
        "/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}",
        enc(crate::harness::LOOPBACK)
    ));
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.header("Location").is_none());
    // With the key as a path prefix.
    let r = request(
        "POST",
        &w.url(&format!("/k/{KEY}/oauth/device_authorization")),
        &[FORM],
        Some("client_id=demo"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let user_code = v["user_code"].as_str().expect("user_code").to_string();
    assert_eq!(v["verification_uri"], w.url(&format!("/k/{KEY}/device")));
    let ip = "198.51.100.26";
    let mut jar = Jar::default();
    let no_key = post_device(&w, &mut jar, ip, &format!("user_code={user_code}"));
    assert_eq!(no_key.status, 403, "the page needs the key too");
    let ask = request(
        "POST",
        &w.url(&format!("/k/{KEY}/device")),
        &[FORM, ("CF-Connecting-IP", ip)],
        Some(&format!("user_code={user_code}")),
    );
    assert_eq!(ask.status, 200, "{}", ask.body);
    jar.keep(&ask);
    let approve = link(&ask.body, "approve");
    assert!(
        approve.starts_with(&format!("/k/{KEY}/device?")),
        "{approve}"
    );
    let go = follow(&w, &mut jar, ip, &approve);
    assert_eq!(go.status, 302, "{}", go.body);
    let authorize = request(
        "GET",
        &w.url(&format!(
            "/k/{KEY}/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}",
            enc(crate::harness::LOOPBACK)
        )),
        &[],
        None,
    );
    assert_eq!(authorize.status, 302, "{}", authorize.body);
    assert!(authorize
        .header("Location")
        .unwrap_or_default()
        .starts_with(&w.mock.base_url()));
}
