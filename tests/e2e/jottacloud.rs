//! Jottacloud, as Duplicati's service offers it: the index sends `type=jottacloud`
//! to the CLI-token page, the pasted CLI token becomes an authid through a
//! password grant for the public client `jottacli` (no secret), its rotating
//! refresh tokens are each used once, and revoking deletes the grant (Jottacloud
//! has no revocation endpoint). The harness points the built-in at the mock.

use base64::Engine as _;
use mock_provider::Config;

use crate::harness::{enc, extract_authid, Broker, Jar, Resp};

pub const TESTS: &[crate::Test] = tests![
    jottacloud_index_leads_to_the_cli_token_page_and_a_pasted_token_logs_in,
    jottacloud_authid_refreshes_with_single_use_rotation_and_revokes,
    jottacloud_bad_cli_tokens_and_forged_forms_get_400_pages,
];

/// A CLI token as Jottacloud shows it: base64url JSON.
fn cli_token(username: &str, auth_token: &str) -> String {
    let json = serde_json::json!({
        "username": username,
        "realm": "jottacloud",
        "auth_token": auth_token,
        "well_known_link": "https://id.jottacloud.com/auth/realms/jottacloud/.well-known/openid-configuration",
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

pub fn good_token() -> String {
    let cfg = Config::default();
    cli_token(&cfg.password_username, &cfg.password)
}

/// The form's hidden `name` value.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// Opens the CLI-token page in `jar`; returns the form's csrf value.
fn open_form(b: &Broker, jar: &mut Jar) -> String {
    let page = b.get_in(jar, "/cli-token?id=jottacloud");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("action=\"/cli-token-login\""));
    assert_eq!(hidden(&page.body, "id").as_deref(), Some("jottacloud"));
    hidden(&page.body, "csrf").expect("csrf field")
}

fn submit(b: &Broker, jar: &mut Jar, csrf: &str, token: &str) -> Resp {
    b.post_form_in(
        jar,
        "/cli-token-login",
        &format!("id=jottacloud&csrf={}&token={}", enc(csrf), enc(token)),
    )
}

/// A whole login from the index; returns the authid.
fn login(b: &Broker) -> String {
    let mut jar = Jar::default();
    let csrf = open_form(b, &mut jar);
    let r = submit(b, &mut jar, &csrf, &good_token());
    assert_eq!(r.status, 200, "{}", r.body);
    let authid = extract_authid(&r.body).expect("authid on the result page");
    b.remember(&authid);
    authid
}

fn jottacloud_index_leads_to_the_cli_token_page_and_a_pasted_token_logs_in(b: &Broker) {
    // Both UIs open the index with `type=jottacloud`; the button goes to the
    // CLI-token page (oauth-handler links it so), not to /login.
    let index = b.get("/?type=jottacloud&token=ignoredtoken12345678");
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains("href=\"/cli-token?id=jottacloud\""),
        "{}",
        index.body
    );
    assert!(!index.body.contains("/login?id=jottacloud"));
    // A /login for it is sent there too.
    let login_link = b.get("/login?id=jottacloud");
    assert_eq!(login_link.status, 302);
    assert!(login_link
        .header("Location")
        .is_some_and(|l| l.ends_with("/cli-token?id=jottacloud")));
    // The form sets its double-submit cookie.
    let mut jar = Jar::default();
    let csrf = open_form(b, &mut jar);
    assert_eq!(jar.get("__Host-broker-cli"), Some(csrf.as_str()));
    b.mock.reset_stats();
    let r = submit(b, &mut jar, &csrf, &good_token());
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Authorized with Jottacloud"));
    let authid = extract_authid(&r.body).expect("authid");
    b.remember(&authid);
    assert!(authid.contains(':'), "a stored v1 authid: {authid}");
    assert!(
        jar.get("__Host-broker-cli").is_none(),
        "the cookie is cleared"
    );
    let s = b.mock.stats();
    assert_eq!(
        (s.password_grants, s.bad_client_auth),
        (1, 0),
        "no secret sent"
    );
    // The first refresh serves the token the login got.
    let first = b.refresh(&authid);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["type"], "jottacloud");
    assert_eq!(
        first.json()["access_token"].as_str(),
        b.mock
            .stats()
            .issued_access_tokens
            .last()
            .map(String::as_str)
    );
}

fn jottacloud_authid_refreshes_with_single_use_rotation_and_revokes(b: &Broker) {
    let authid = login(b);
    b.mock.reset_stats();
    let mut seen = Vec::new();
    for _ in 0..4 {
        b.expire_access_token(&authid);
        let r = b.refresh(&authid);
        assert_eq!(r.status, 200, "{}", r.body);
        let at = r.json()["access_token"].as_str().expect("at").to_string();
        assert!(!seen.contains(&at), "a new access token each time");
        seen.push(at);
    }
    let s = b.mock.stats();
    assert_eq!(s.refresh_successes, 4);
    assert_eq!(s.spent_refresh_reuse, 0, "no spent refresh token reused");
    assert_eq!(s.bad_client_auth, 0);
    // Revoke: Jottacloud has no revocation endpoint; the grant is deleted.
    let r = b.post_form("/revoked", &format!("authid={}", enc(&authid)));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("no revocation endpoint"), "{}", r.body);
    assert_eq!(b.mock.stats().revoke_calls, 0);
    let gone = b.refresh(&authid);
    assert_eq!(gone.status, 401, "{}", gone.body);
    assert_eq!(gone.json()["error"], "unknown_authid");
}

fn jottacloud_bad_cli_tokens_and_forged_forms_get_400_pages(b: &Broker) {
    let mut jar = Jar::default();
    let csrf = open_form(b, &mut jar);
    b.mock.reset_stats();
    let std_b64 = base64::engine::general_purpose::STANDARD
        .encode(r#"{"username":"u??","auth_token":"a>>"}"#);
    let bad = [
        "definitely not a token <script>".to_string(),
        std_b64,
        cli_token("", "x"),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"username":"u"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("[1,2]"),
    ];
    for token in &bad {
        let r = submit(b, &mut jar, &csrf, token);
        assert_eq!(r.status, 400, "{token}: {}", r.body);
        assert_eq!(r.header("X-Error-Code"), Some("bad_cli_token"));
        assert!(r
            .header("Content-Type")
            .is_some_and(|c| c.starts_with("text/html")));
        assert!(!r.body.contains(token.as_str()), "never echoed");
    }
    // Well-formed but refused by the provider.
    let wrong = cli_token("mock-user@example.com", "wrong-auth-token");
    let r = submit(b, &mut jar, &csrf, &wrong);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("X-Error-Code"), Some("cli_token_rejected"));
    assert!(!r.body.contains("wrong-auth-token"));
    assert_eq!(b.mock.stats().password_grants, 0);
    // A forged form: no cookie, or another browser's value.
    let token = good_token();
    let no_cookie = b.post_form(
        "/cli-token-login",
        &format!("id=jottacloud&csrf={}&token={}", enc(&csrf), enc(&token)),
    );
    assert_eq!(no_cookie.status, 400);
    assert_eq!(no_cookie.header("X-Error-Code"), Some("invalid_state"));
    let mut other = Jar::default();
    let other_csrf = open_form(b, &mut other);
    let r = submit(b, &mut jar, &other_csrf, &token);
    assert_eq!(r.header("X-Error-Code"), Some("invalid_state"));
    assert_eq!(
        b.mock.stats().token_calls,
        1,
        "only the refused token went upstream"
    );
    // Only CLI-token providers have this page.
    assert_eq!(b.get("/cli-token?id=demo").status, 404);
    assert_eq!(b.get("/cli-token").status, 400);
}
