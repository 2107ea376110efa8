//! The walking skeleton: routes answer from the real worker in workerd.

use crate::harness::Broker;

pub const TESTS: &[crate::Test] = tests![
    healthz_answers_ok,
    index_lists_the_configured_demo_provider,
    unknown_route_is_a_json_404_with_x_reason,
    wrong_method_is_405,
    worker_runs_in_workerd_with_d1_and_outbound_fetch,
];

fn healthz_answers_ok(b: &Broker) {
    let r = b.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
}

fn index_lists_the_configured_demo_provider(b: &Broker) {
    let r = b.get("/");
    assert_eq!(r.status, 200);
    assert!(r
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(r.body.contains("href=\"/login?id=demo\""), "{}", r.body);
    assert!(r.body.contains("Demo provider"));
    // Built-ins without client id/secret are not offered.
    assert!(!r.body.contains("login?id=googledrive"));
    // No external assets, strict CSP.
    assert!(!r.body.contains("src=\"http") && !r.body.contains("<link"));
    let csp = r.header("Content-Security-Policy").expect("CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"));
}

fn unknown_route_is_a_json_404_with_x_reason(b: &Broker) {
    let r = b.get("/nope/<script>");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    assert!(r.header("X-Reason").is_some_and(|x| !x.is_empty()));
    assert!(!r.body.contains("<script>"));
}

fn wrong_method_is_405(b: &Broker) {
    let r = crate::harness::request("DELETE", &b.url("/refresh"), &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"], "method_not_allowed");
    let r = crate::harness::request("POST", &b.url("/healthz"), &[], Some(""));
    assert_eq!(r.status, 405);
}

/// Fails unless the worker really runs: the access token it returns was issued by
/// the mock (outbound fetch from inside the worker) and the grant row exists in
/// the local D1 (a real D1 round trip).
fn worker_runs_in_workerd_with_d1_and_outbound_fetch(b: &Broker) {
    let before = b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"]
        .as_i64()
        .expect("count");
    let authid = b.login();
    let after = b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"]
        .as_i64()
        .expect("count");
    assert_eq!(after, before + 1, "login stored one grant row in D1");
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let stats = b.mock.stats();
    assert!(
        stats.issued_access_tokens.contains(&token),
        "the token came from the mock via the worker's fetch"
    );
    assert!(stats.code_exchanges >= 1);
}
