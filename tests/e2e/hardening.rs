//! Hardening: the documented server-secret rotation keeps every route working,
//! and every answer carries the security headers. Elsewhere: the hostile-request
//! table (`hostile.rs`), rate limits (`abuse.rs`), the access gate (`gate.rs`).

use mock_provider::Config;

use oauth_broker::authid::AuthId;
use oauth_broker::ids::Shard;

use crate::harness::{
    extract_authid, request, Broker, Options, Resp, ADMIN_API_KEY, SEALING_SECRET,
};

pub const TESTS: &[crate::Test] = tests![
    every_step_of_the_documented_secret_rotation_keeps_every_route_working,
    every_response_carries_the_security_headers,
];

/// The second server secret of the rotation test (`S1` is the harness's
/// [`SEALING_SECRET`], version 1).
const ROTATED_SECRET: &str = "2:rotated-sealing-secret-abcdefghijklmnopqrstuvwxyz";

/// SECURITY.md "Rotating the server secret", followed step by step: each step
/// restarts the worker on the same local D1 with exactly the bindings that step
/// leaves, and checks every route that needs the server keys (refresh of a grant
/// made before the rotation, a new login through the callback, export, import,
/// revoke, and an old-UI hand-off left pending by the step before).
fn every_step_of_the_documented_secret_rotation_keeps_every_route_working(b: &Broker) {
    let state = b.dir.join("rotation-state");
    let _ = std::fs::remove_dir_all(&state);
    let start = |current: &str, previous: Option<&str>| {
        Broker::start_with(
            &b.mock,
            Options {
                sealing_secret: current.into(),
                previous_secrets: previous.map(Into::into),
                state_dir: Some(state.clone()),
                ..Options::default()
            },
        )
    };

    // Step 0, before the rotation: SEALING_SECRET=1:S1.
    let w = start(SEALING_SECRET, None);
    let mut s = Step::new(b, &w, "step 0 (SEALING_SECRET=1:S1)");
    // `stored` is refreshed at every step; each `revoke_at_*` is exported,
    // imported and revoked at its step.
    let stored = s.login();
    let [revoke_at_0, revoke_at_2, revoke_at_3, revoke_at_5] = [(); 4].map(|_| s.login());
    s.refresh(&stored);
    w.expire_access_token(&stored);
    s.refresh_upstream(&stored);
    s.export_import_revoke(&revoke_at_0);
    let (pending_0, handoff_0) = s.leave_handoff();
    s.done();
    assert_eq!(key_versions(&w), [1], "step 0 seals under v1");
    drop(w);

    // Step 1 is generating 2:S2; nothing is deployed.
    // Step 2: SEALING_SECRETS_PREVIOUS=1:S1 (the current value) while
    // SEALING_SECRET is still 1:S1.
    let w = start(SEALING_SECRET, Some(SEALING_SECRET));
    let mut s = Step::new(
        b,
        &w,
        "step 2 (SEALING_SECRET=1:S1, SEALING_SECRETS_PREVIOUS=1:S1)",
    );
    s.collect_handoff(&pending_0, &handoff_0);
    s.refresh(&stored);
    w.expire_access_token(&stored);
    s.refresh_upstream(&stored);
    s.export_import_revoke(&revoke_at_2);
    let new_at_2 = s.login();
    s.refresh(&new_at_2);
    let (pending_2, handoff_2) = s.leave_handoff();
    s.done();
    assert_eq!(key_versions(&w), [1], "step 2 still seals under v1");
    let v1_hashes = key_hashes(&w);
    drop(w);

    // Step 3: SEALING_SECRET=2:S2, SEALING_SECRETS_PREVIOUS=1:S1.
    let w = start(ROTATED_SECRET, Some(SEALING_SECRET));
    let mut s = Step::new(
        b,
        &w,
        "step 3 (SEALING_SECRET=2:S2, SEALING_SECRETS_PREVIOUS=1:S1)",
    );
    s.collect_handoff(&pending_2, &handoff_2);
    s.refresh(&stored);
    // From here on every grant written carries a 30 s access token, so each
    // refresh of it at step 5 must open its row and go upstream.
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    w.expire_access_token(&stored);
    s.refresh_upstream(&stored);
    s.export_import_revoke(&revoke_at_3);
    let new_at_3 = s.login();
    s.refresh(&new_at_3);
    let (pending_3, handoff_3) = s.leave_handoff();
    s.done();
    // Step 4: rows under v1 are re-sealed under v2 on their next write.
    assert_eq!(
        key_versions(&w),
        [1, 2],
        "old rows wait for their next write"
    );
    let mut s = Step::new(b, &w, "step 4 (re-sealing on the next refresh)");
    for a in [&revoke_at_5, &new_at_2, &handoff_0, &handoff_2] {
        w.expire_access_token(a);
        s.refresh_upstream(a);
    }
    s.done();
    assert_eq!(key_versions(&w), [2], "every row re-sealed under v2");
    let v2_hashes = key_hashes(&w);
    assert!(
        v2_hashes.iter().all(|h| !v1_hashes.contains(h)),
        "re-sealed rows are re-keyed under v2's lookup key"
    );
    drop(w);

    // Step 5: SEALING_SECRET=2:S2 alone, now that no row uses v1.
    let w = start(ROTATED_SECRET, None);
    let mut s = Step::new(b, &w, "step 5 (SEALING_SECRET=2:S2)");
    s.collect_handoff(&pending_3, &handoff_3);
    for a in [
        &stored,
        &revoke_at_5,
        &new_at_2,
        &handoff_0,
        &handoff_2,
        &new_at_3,
    ] {
        s.refresh_upstream(a);
    }
    s.export_import_revoke(&revoke_at_5);
    let new_at_5 = s.login();
    s.refresh(&new_at_5);
    let (pending_5, handoff_5) = s.leave_handoff();
    s.collect_handoff(&pending_5, &handoff_5);
    s.done();
    assert_eq!(key_versions(&w), [2]);
    drop(w);
    let _ = std::fs::remove_dir_all(&state);
}

/// The distinct `key_version`s of the stored grants, ascending.
fn key_versions(w: &Broker) -> Vec<u64> {
    w.d1("SELECT DISTINCT key_version FROM grants ORDER BY key_version")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["key_version"].as_u64())
        .collect()
}

fn key_hashes(w: &Broker) -> Vec<String> {
    w.d1("SELECT key_hash FROM grants")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["key_hash"].as_str().map(str::to_string))
        .collect()
}

/// One step of the rotation: every request it makes is checked, and every
/// answer that is not what the route should give is collected, so a broken
/// step reports all its broken routes at once (`done`).
struct Step<'a> {
    b: &'a Broker,
    w: &'a Broker,
    name: &'static str,
    problems: Vec<String>,
}

impl<'a> Step<'a> {
    fn new(b: &'a Broker, w: &'a Broker, name: &'static str) -> Step<'a> {
        Step {
            b,
            w,
            name,
            problems: Vec::new(),
        }
    }

    fn expect(&mut self, what: &str, r: &Resp, want: u16) -> bool {
        if r.status == want {
            return true;
        }
        self.problems.push(format!(
            "{what}: {} {} (want {want})",
            r.status,
            r.header("X-Error-Code").unwrap_or("")
        ));
        false
    }

    /// A login through the callback; the authid (empty if the callback failed).
    fn login_at(&mut self, what: &str, login_path: &str) -> String {
        let (callback, cookie) = self.w.login_to_callback(login_path);
        let page = request("GET", &callback, &[("Cookie", &cookie)], None);
        if !self.expect(what, &page, 200) {
            return String::new();
        }
        let authid = extract_authid(&page.body).unwrap_or_default();
        self.b.remember(&authid);
        authid
    }

    fn login(&mut self) -> String {
        self.login_at("new login (callback)", "/login?id=demo")
    }

    /// A refresh answered 200 with an access token (skipped for the empty
    /// authid of a login that already failed).
    fn refresh(&mut self, authid: &str) {
        if authid.is_empty() {
            return;
        }
        let r = self.w.refresh(authid);
        if self.expect("refresh", &r, 200) && !r.json()["access_token"].is_string() {
            self.problems.push("refresh: no access_token".into());
        }
    }

    /// A refresh that must open the row, go upstream and write the grant back.
    fn refresh_upstream(&mut self, authid: &str) {
        if authid.is_empty() {
            return;
        }
        let before = self.b.mock.stats().refresh_calls;
        self.refresh(authid);
        let calls = self.b.mock.stats().refresh_calls - before;
        if calls != 1 {
            self.problems
                .push(format!("refresh: {calls} upstream refreshes (want 1)"));
        }
    }

    /// Exports `authid`'s grant, imports it under a fresh authid, exports that,
    /// then revokes both (the original last: its row opens, then is deleted).
    fn export_import_revoke(&mut self, authid: &str) {
        let w = self.w;
        let export =
            |a: &str| w.get_with("/export", &[("X-APIKey", ADMIN_API_KEY), ("X-AuthID", a)]);
        let exported = export(authid);
        if self.expect("export", &exported, 200) {
            let refresh_token = exported.json()["refresh_token"].clone();
            let copy = AuthId::generate(Shard::FIRST).expect("csprng").expose();
            self.b.remember(&copy);
            let imported = request(
                "POST",
                &w.url("/import"),
                &[("X-APIKey", ADMIN_API_KEY), ("X-AuthID", &copy)],
                Some(&exported.body),
            );
            if self.expect("import", &imported, 200) {
                let reexported = export(&copy);
                if self.expect("export of the imported grant", &reexported, 200)
                    && reexported.json()["refresh_token"] != refresh_token
                {
                    self.problems.push("import: another refresh token".into());
                }
                self.revoke("revoke of the imported grant", &copy);
            }
        }
        self.revoke("revoke", authid);
    }

    /// `POST /revoked`, then the authid no longer refreshes.
    fn revoke(&mut self, what: &str, authid: &str) {
        let enc: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
        let r = self.w.post_form("/revoked", &format!("authid={enc}"));
        if self.expect(what, &r, 200) {
            let gone = self.w.refresh(authid);
            self.expect(&format!("refresh after the {what}"), &gone, 401);
        }
    }

    /// Duplicati's old UI at this step: the index registers its token, a
    /// login carries it, the user confirms on the result page, and the authid
    /// waits sealed for `/fetch`, which the UI has not collected yet. (token, authid)
    fn leave_handoff(&mut self) -> (String, String) {
        // Duplicati's old UI in one popup browser: the index registers the
        // token in this browser, the login carries it, and the user's click on
        // the result page releases the authid to /fetch.
        let token = crate::harness::duplicati_token();
        let mut popup = crate::harness::Jar::default();
        let index = self
            .w
            .get_in(&mut popup, &format!("/?type=demo&token={token}"));
        self.expect("old-UI index", &index, 200);
        let waiting = self.w.get(&format!("/fetch?token={token}"));
        if self.expect("fetch before the login", &waiting, 200)
            && waiting.json() != serde_json::json!({"wait": "Not ready"})
        {
            self.problems
                .push(format!("fetch before the login: {}", waiting.body));
        }
        let (page, _) = self
            .w
            .login_in(&mut popup, &format!("/login?id=demo&token={token}"));
        if !self.expect("old-UI login (callback)", &page, 200) {
            return (token, String::new());
        }
        let authid = extract_authid(&page.body).unwrap_or_default();
        self.b.remember(&authid);
        let Some(confirm) = crate::harness::extract_confirm(&page.body) else {
            self.problems
                .push("old-UI result page: no confirmation form".into());
            return (token, authid);
        };
        let sent = self
            .w
            .post_form_in(&mut popup, "/handoff", &format!("confirm={confirm}"));
        self.expect("old-UI confirmation", &sent, 200);
        (token, authid)
    }

    /// Collects a hand-off left pending at an earlier step, and uses its authid.
    fn collect_handoff(&mut self, token: &str, authid: &str) {
        let r = self.w.get(&format!("/fetch?token={token}"));
        if !self.expect("fetch of the pending hand-off", &r, 200) {
            return;
        }
        let answer = r.json();
        if authid.is_empty() || answer["authid"] != authid {
            // Never print an authid: say only what came instead.
            let got = answer["error"].as_str().or(answer["wait"].as_str());
            self.problems.push(format!(
                "fetch of the pending hand-off: {}",
                got.unwrap_or("another authid")
            ));
            return;
        }
        self.refresh(authid);
    }

    /// Fails the test with every problem this step met.
    fn done(self) {
        assert!(
            self.problems.is_empty(),
            "{}: {} problems:\n  {}",
            self.name,
            self.problems.len(),
            self.problems.join("\n  ")
        );
    }
}

fn assert_headers(r: &Resp, what: &str) {
    assert_eq!(r.header("Cache-Control"), Some("no-store"), "{what}");
    assert_eq!(
        r.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("Referrer-Policy"), Some("no-referrer"), "{what}");
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"), "{what}");
    if r.header("Content-Type")
        .unwrap_or("")
        .starts_with("text/html")
    {
        let csp = r.header("Content-Security-Policy").unwrap_or("");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}");
        assert!(!csp.contains("unsafe-inline"), "{what}");
    }
}

fn every_response_carries_the_security_headers(b: &Broker) {
    let authid = b.login();
    let (callback, cookie) = b.start_login_to_callback();
    let result = request("GET", &callback, &[("Cookie", &cookie)], None);
    b.remember(&crate::harness::extract_authid(&result.body).unwrap_or_default());
    let cases = [
        ("healthz", b.get("/healthz")),
        ("index", b.get("/")),
        ("login", b.get("/login?id=demo")),
        ("result page", result),
        ("refresh", b.refresh(&authid)),
        ("refresh error", b.refresh("bad")),
        ("revoke form", b.get("/revoke")),
        ("fetch", b.get("/fetch?token=x")),
        ("not found", b.get("/nope")),
    ];
    for (what, r) in &cases {
        assert_headers(r, what);
        assert!(
            r.header("Strict-Transport-Security").is_none(),
            "no HSTS over http"
        );
    }
}
