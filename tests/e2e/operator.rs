//! The operator's side (issue 23): a misconfigured provider app is named as
//! such to the user and in one structured log line, and leaves every grant
//! as it was.

use mock_provider::Config;
use serde_json::Value;

use crate::harness::{Broker, Jar};

pub const TESTS: &[crate::Test] = &[(
    "a_provider_refusing_the_brokers_client_sends_the_user_to_the_operator_and_logs_the_upstream_status",
    a_provider_refusing_the_brokers_client_sends_the_user_to_the_operator_and_logs_the_upstream_status,
)];

/// The worker's JSON log lines (each console line is one object; wrangler
/// prints it after a prefix, and colours warnings and errors; its own lines
/// are not JSON and are skipped).
pub fn json_lines(b: &Broker) -> Vec<Value> {
    b.log_text()
        .lines()
        .filter_map(|l| l.get(l.find('{')?..=l.rfind('}')?))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"].is_string())
        .collect()
}

fn upstream_lines(b: &Broker, grant: &str) -> Vec<Value> {
    json_lines(b)
        .into_iter()
        .filter(|v| v["event"] == "upstream_token" && v["grant"] == grant)
        .filter(|v| v["outcome"] == "client_rejected")
        .collect()
}

fn a_provider_refusing_the_brokers_client_sends_the_user_to_the_operator_and_logs_the_upstream_status(
    b: &Broker,
) {
    let authid = b.login();
    let before_refresh = upstream_lines(b, "refresh_token").len();
    let before_login = upstream_lines(b, "authorization_code").len();
    // The operator's client secret expired at the provider.
    b.mock.set_config(Config {
        client_rejected: true,
        ..Config::default()
    });
    b.expire_access_token(&authid);
    let r = b.refresh(&authid);
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["error"], "provider_misconfigured", "{}", r.body);
    let reason = r.header("X-Reason").unwrap_or_default().to_string();
    assert!(reason.contains("tell its operator"), "{reason}");
    // A new login at the same moment: the callback's page says the same.
    let mut jar = Jar::default();
    let (page, _) = b.login_in(&mut jar, "/login?id=demo");
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.body.contains("tell its operator"), "{}", page.body);
    assert!(
        page.body.contains("provider_misconfigured"),
        "{}",
        page.body
    );

    // One line per refused call, naming provider, grant, status and error.
    let wait = std::time::Instant::now();
    while (upstream_lines(b, "authorization_code").len() == before_login
        || upstream_lines(b, "refresh_token").len() == before_refresh)
        && wait.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for (grant, before) in [
        ("refresh_token", before_refresh),
        ("authorization_code", before_login),
    ] {
        let lines = upstream_lines(b, grant);
        assert_eq!(lines.len(), before + 1, "one {grant} line: {lines:?}");
        let l = lines.last().expect("a line");
        assert_eq!(l["provider"], "demo", "{l}");
        assert_eq!(l["upstream_status"], 401, "{l}");
        assert_eq!(l["oauth_error"], "invalid_client", "{l}");
        assert!(l["duration_ms"].is_u64(), "{l}");
    }
    let failed: Vec<Value> = json_lines(b)
        .into_iter()
        .filter(|v| v["event"] == "request_failed" && v["error"] == "provider_misconfigured")
        .collect();
    assert!(
        failed.iter().any(|v| v["route"] == "/refresh"
            && v["status"] == 503
            && v["cause"]
                .as_str()
                .unwrap_or_default()
                .contains("CLIENT_SECRET_")),
        "{failed:?}"
    );

    // The operator fixes the secret: the very same grant refreshes, nothing
    // was marked for re-authorization.
    b.mock.set_config(Config::default());
    let again = b.refresh(&authid);
    assert_eq!(again.status, 200, "{}", again.body);
}
