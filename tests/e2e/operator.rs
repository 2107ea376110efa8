//! The operator's side (issue 23): a misconfigured provider app is named as
//! such to the user and in one structured log line, and leaves every grant
//! as it was.

use mock_provider::Config;
use serde_json::Value;

use crate::harness::{request, Broker, Jar, Options, ADMIN_API_KEY};

pub const TESTS: &[crate::Test] = tests![
    a_provider_refusing_the_brokers_client_sends_the_user_to_the_operator_and_logs_the_upstream_status,
    the_doctor_names_each_planted_fault_with_its_fix_and_nothing_without_the_admin_key,
    the_doctor_counts_grants_by_provider_and_state_after_a_scripted_sequence,
];

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

    // The doctor says which secret to fix.
    let doctor = status(b, Some(ADMIN_API_KEY)).json()["problems"].to_string();
    assert!(
        doctor.contains("demo refused the broker's client credentials")
            && doctor.contains("CLIENT_SECRET_DEMO"),
        "{doctor}"
    );

    // The operator fixes the secret: the very same grant refreshes, nothing
    // was marked for re-authorization, and the doctor has nothing left to say.
    b.mock.set_config(Config::default());
    let again = b.refresh(&authid);
    assert_eq!(again.status, 200, "{}", again.body);
    let doctor = status(b, Some(ADMIN_API_KEY)).json()["problems"].to_string();
    assert!(!doctor.contains("refused the broker's client"), "{doctor}");
}

fn status(b: &Broker, key: Option<&str>) -> crate::harness::Resp {
    let h: Vec<(&str, &str)> = key.map(|k| vec![("X-APIKey", k)]).unwrap_or_default();
    request("GET", &b.url("/admin/status"), &h, None)
}

/// `GET /admin/status` (`src/doctor.rs`) on a broker deployed with the
/// classic mistakes: no `SEALING_SECRET`, a misspelt `CLIENT_SECRET_*`, a
/// client id without its secret, and a shard one migration behind.
fn the_doctor_names_each_planted_fault_with_its_fix_and_nothing_without_the_admin_key(b: &Broker) {
    // The shared broker is healthy: nothing to fix.
    let healthy = status(b, Some(ADMIN_API_KEY));
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    assert_eq!(healthy.header("Cache-Control"), Some("no-store"));
    let v = healthy.json();
    assert_eq!(v["ok"], true, "{}", v["problems"]);
    let demo = v["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["id"] == "demo")
        .expect("demo")
        .clone();
    assert_eq!(demo["offered"], true);
    assert_eq!(demo["redirect_uri"], b.url("/callback/demo"));
    assert!(v["shards"][0]["up_to_date"] == true, "{}", v["shards"]);

    let state = b.dir.join("doctor");
    let _ = std::fs::remove_dir_all(&state);
    let w = Broker::start_with(
        &b.mock,
        Options {
            sealing_secret: String::new(),
            d1_shards: 2,
            state_dir: Some(state),
            extra_vars: vec![
                (
                    "PRIVACY_CONTACT".into(),
                    "Example Backup Ops <ops@example.org>".into(),
                ),
                ("CLIENT_ID_DROPBOX".into(), "dropbox-app-id".into()),
                (
                    "CLIENT_SECRET_DROPBOXX".into(),
                    "misspelt-secret-value".into(),
                ),
            ],
            ..Options::default()
        },
    );
    // Shard 2 lags one migration behind the code.
    w.d1_on(
        2,
        "DELETE FROM d1_migrations WHERE id = (SELECT MAX(id) FROM d1_migrations)",
    );
    for key in [None, Some("wrong-key")] {
        let r = status(&w, key);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_api_key");
        for word in ["SEALING", "DROPBOX", "shard", "migration", "provider"] {
            assert!(!r.body.contains(word), "a 401 reveals nothing: {}", r.body);
        }
    }
    let r = status(&w, Some(ADMIN_API_KEY));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["ok"], false);
    let problems: Vec<String> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| format!("{} => {}", p["what"], p["fix"]))
        .collect();
    let all = problems.join("\n");
    // The migration before the newest: where shard 2 was left.
    let mut names: Vec<String> =
        std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"))
            .expect("migrations")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
    names.sort();
    let previous = &names[names.len() - 2][..4];
    let lagging = format!("shard 2 (DB_2) is at migration {previous}");
    for (fault, fix) in [
        (
            "SEALING_SECRET is missing",
            "wrangler secret put SEALING_SECRET",
        ),
        (
            "CLIENT_SECRET_DROPBOXX is set, but the broker never reads it",
            "rename it to CLIENT_SECRET_DROPBOX",
        ),
        (
            "dropbox: CLIENT_ID_DROPBOX is set but CLIENT_SECRET_DROPBOX is not",
            "callback/dropbox",
        ),
        (lagging.as_str(), "scripts/migrate.sh --remote"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(fault) && p.contains(fix)),
            "{fault} / {fix} in:\n{all}"
        );
    }
    assert_eq!(problems.len(), 4, "only the planted faults:\n{all}");
    // Never a secret's value.
    for secret in [
        "misspelt-secret-value",
        crate::harness::CLIENT_SECRET,
        ADMIN_API_KEY,
    ] {
        assert!(!r.body.contains(secret));
    }
    // The same for a browser: a form takes the key (in the body, never a
    // URL), and the report is a page.
    let form = request("GET", &w.url("/admin"), &[], None);
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"key\"") && form.body.contains("action=\"/admin\""));
    let wrong = w.post_form("/admin", "key=wrong-key");
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("not this broker's admin key"));
    assert!(!wrong.body.contains("DROPBOX") && !wrong.body.contains("SEALING"));
    let key: String = url::form_urlencoded::byte_serialize(ADMIN_API_KEY.as_bytes()).collect();
    let page = w.post_form("/admin", &format!("key={key}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("Cache-Control"), Some("no-store"));
    assert!(page.body.contains("4 problem(s)"), "{}", page.body);
    assert!(page
        .body
        .contains("Fix: rename it to CLIENT_SECRET_DROPBOX"));
    assert!(page.body.contains("/callback/dropbox"));
    assert!(!page.body.contains("misspelt-secret-value") && !page.body.contains(ADMIN_API_KEY));
    // The privacy page the operator configured (Google's consent screen asks for one);
    // off on a broker without PRIVACY_CONTACT.
    let privacy = request("GET", &w.url("/privacy"), &[], None);
    assert_eq!(privacy.status, 200);
    assert!(privacy
        .body
        .contains("Example Backup Ops &lt;ops@example.org&gt;"));
    assert!(privacy.body.contains("href=\"/revoke\""));
    assert_eq!(request("GET", &b.url("/privacy"), &[], None).status, 404);

    // The same in a terminal: scripts/doctor.sh, exit 1 on a problem.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/doctor.sh"))
        .arg(&w.base)
        .env("ADMIN_API_KEY", ADMIN_API_KEY)
        .output()
        .expect("run scripts/doctor.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("    scripts/doctor.sh {}:\n{text}", w.base);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("4 problem(s):"), "{text}");
    assert!(
        text.contains("fix: rename it to CLIENT_SECRET_DROPBOX"),
        "{text}"
    );
    assert!(text.contains("2 DB_2: behind"), "{text}");
    assert!(!text.contains(ADMIN_API_KEY));
}

/// The doctor's `grants` row for `provider` on shard 1, then its last 24
/// hours' outcomes, as `[active, reauthorization_required, idle_soon,
/// invalid_grant, provider_4xx, provider_5xx]`.
fn grant_counts(b: &Broker, provider: &str) -> [i64; 6] {
    let v = status(b, Some(ADMIN_API_KEY)).json();
    let last_24h = v["last_refresh_24h"]
        .as_array()
        .expect("last_refresh_24h")
        .iter()
        .find(|g| g["provider"] == provider)
        .cloned()
        .unwrap_or_default();
    let outcome = |k: &str| last_24h[k].as_i64().unwrap_or(0);
    let row = v["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["shard"] == 1 && g["provider"] == provider)
        .cloned()
        .unwrap_or_default();
    let n = |k: &str| row[k].as_i64().unwrap_or(0);
    [
        n("active"),
        n("reauthorization_required"),
        n("idle_soon"),
        outcome("invalid_grant"),
        outcome("provider_4xx"),
        outcome("provider_5xx"),
    ]
}

fn the_doctor_counts_grants_by_provider_and_state_after_a_scripted_sequence(b: &Broker) {
    let before = grant_counts(b, "box.com");
    // Box logins: one left alone, one whose user revoked the app
    // (the provider answers invalid_grant), one not refreshed for 50 days
    // (Box forgets a refresh token after 60: due within the doctor's 14).
    let fresh = b.login_at("/login?id=box.com");
    let revoked = b.login_at("/login?id=box.com");
    let idle = b.login_at("/login?id=box.com");
    b.mock.set_config(Config {
        invalid_grant: true,
        ..Config::default()
    });
    b.expire_access_token(&revoked);
    assert_eq!(b.refresh(&revoked).status, 503);
    // Two whose refresh met a failing provider: a 5xx, then a refused request.
    let unavailable = b.login_at("/login?id=box.com");
    let refused = b.login_at("/login?id=box.com");
    for (authid, fail_status) in [(&unavailable, 503), (&refused, 400)] {
        b.mock.set_config(Config {
            fail_status: Some(fail_status),
            ..Config::default()
        });
        b.expire_access_token(authid);
        assert_eq!(b.refresh(authid).status, 502, "upstream {fail_status}");
    }
    b.mock.set_config(Config::default());
    use oauth_broker::authid::{parse_authid, ParsedAuthId};
    let keys =
        oauth_broker::seal::ServerKeys::parse(crate::harness::SEALING_SECRET, None).expect("keys");
    let Ok(ParsedAuthId::V1(id)) = parse_authid(&idle) else {
        panic!("a stored authid")
    };
    b.d1(&format!(
        "UPDATE grants SET updated_at = updated_at - 50 * 86400 WHERE key_hash = '{}'",
        keys.key_hash(&id)
    ));
    let after = grant_counts(b, "box.com");
    let delta: Vec<i64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        delta,
        [4, 1, 1, 1, 1, 1],
        "[active, reauthorization_required, idle_soon, last refresh in 24 h: invalid_grant, \
         provider_4xx, provider_5xx] before {before:?}, after {after:?}"
    );
    assert_eq!(b.refresh(&fresh).status, 200);
}
