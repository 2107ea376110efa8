//! Moving from Duplicati's own services (issue 13 item 7): their authids
//! (duplicati/oauth-handler main.py `create_authtoken` L55-87 and
//! password_generator.py; duplicati/oauth-server StorageProvider.cs
//! `CreateAuthTokenAsync` and PasswordGenerator.cs) are accepted on import and
//! refresh; `/import` takes oauth-handler's `/export` body as it is and, like
//! oauth-handler's own `/import` (main.py L1000-1080), overwrites; and an
//! unknown oauth-handler authid moves lazily from the operator's
//! oauth-handler on its first refresh (the fake: mock-provider
//! src/oauth_handler.rs, following main.py `export` L922-998).

use std::io::Read;
use std::sync::Arc;
use std::thread;

use mock_provider::oauth_handler::API_KEY as HANDLER_KEY;

use std::time::{Duration, Instant};

use crate::harness::{
    free_port, in_one_rate_limit_window, request, Broker, Options, Resp, ADMIN_API_KEY, CLIENT_ID,
    CLIENT_SECRET,
};

pub const TESTS: &[crate::Test] = tests![
    revoking_an_oauth_handler_authid_not_moved_yet_moves_it_then_revokes_it,
    duplicati_service_authids_import_from_an_oauth_handler_export_as_is,
    importing_again_overwrites_until_the_first_refresh_and_another_secret_never,
    a_grant_stored_again_under_a_revoked_authid_never_restarts_its_version,
    an_oauth_handler_authid_moves_lazily_on_its_first_refresh,
    concurrent_first_refreshes_move_one_grant_and_refresh_it_once,
    an_unreachable_oauth_handler_is_a_retryable_error_and_stores_nothing,
    a_plain_http_oauth_handler_url_is_server_misconfigured,
    an_unknown_handler_authid_is_asked_for_once_then_answered_from_the_negative_cache,
    moving_from_oauth_handler_has_a_per_ip_budget,
];

fn urandom(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf
}

/// password_generator.py `generate_pass` / PasswordGenerator.cs `Generate`:
/// a random class, never the previous one, then a random character of it.
fn service_password(len: usize) -> String {
    const CLASSES: [&str; 4] = [
        "abcdefghijklmnopqrstuvwxyz",
        "0123456789",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "!-_.",
    ];
    let bytes = urandom(len * 8);
    let mut it = bytes.iter();
    let mut out = String::new();
    let mut prev = usize::MAX;
    while out.len() < len {
        let class = usize::from(*it.next().expect("enough randomness")) % 4;
        if class == prev {
            continue;
        }
        prev = class;
        let set = CLASSES[class].as_bytes();
        let pick = usize::from(*it.next().expect("enough randomness")) % set.len();
        out.push(char::from(set[pick]));
    }
    out
}

/// An oauth-handler authid: `'%030x' % random.randrange(16 ** 32)` + `:` +
/// a 21-character password (main.py L71-87). `digits` picks how long the
/// keyid came out (30 when the number is small, up to 32).
fn handler_authid(digits: usize) -> String {
    let hex: String = urandom(16).iter().map(|b| format!("{b:02x}")).collect();
    let mut keyid = hex[32 - digits..].to_string();
    if digits > 30 && keyid.starts_with('0') {
        // `%030x` writes no leading zero beyond the 30th digit.
        keyid.replace_range(0..1, "7");
    }
    format!("{keyid}:{}", service_password(21))
}

/// An oauth-server authid: `Guid.NewGuid().ToString("N")` + `:` + 32 characters.
fn server_authid() -> String {
    let hex: String = urandom(16).iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}:{}", service_password(32))
}

/// The old service's export of a grant, fetched exactly as oauth-handler's
/// `/export` is called (GET, `X-APIKey`, `X-AuthID`).
fn export_from_handler(b: &Broker, authid: &str) -> Resp {
    request(
        "GET",
        &format!("{}/export", b.mock.oauth_handler_url()),
        &[("X-APIKey", HANDLER_KEY), ("X-AuthID", authid)],
        None,
    )
}

/// A grant stored in the fake oauth-handler under `authid`, as its user's
/// login left it there.
fn stored_at_handler(b: &Broker, authid: &str) {
    b.mock
        .oauth_handler_store(authid, "box.com", b.mock.issue_grant());
}

fn import(b: &Broker, authid: Option<&str>, body: &str) -> Resp {
    let mut h = vec![
        ("X-APIKey", ADMIN_API_KEY),
        ("Content-Type", "application/json"),
    ];
    if let Some(a) = authid {
        h.push(("X-AuthID", a));
    }
    request("POST", &b.url("/import"), &h, Some(body))
}

fn grant_rows(b: &Broker) -> u64 {
    b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"]
        .as_u64()
        .expect("count")
}

fn duplicati_service_authids_import_from_an_oauth_handler_export_as_is(b: &Broker) {
    for authid in [
        handler_authid(30),
        handler_authid(31),
        handler_authid(32),
        server_authid(),
    ] {
        b.remember(&authid);
        // Before: refused as malformed (the Duplicati token call, X-AuthID).
        stored_at_handler(b, &authid);
        let exported = export_from_handler(b, &authid);
        assert_eq!(exported.status, 200, "{}", exported.body);
        assert_eq!(exported.json()["service"], "box.com");
        assert!(exported.json()["expires_in"].is_number());
        let r = import(b, Some(&authid), &exported.body);
        assert_eq!(r.status, 200, "{}: {}", authid.len(), r.body);
        assert_eq!(r.json()["imported"], true);
        assert_eq!(r.json()["replaced"], false);
        assert!(
            r.json().get("authid").is_none(),
            "the operator's authid is kept"
        );
        b.mock.reset_stats();
        let r = b.refresh(&authid);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["type"], "box.com");
        assert_eq!(b.mock.stats().refresh_calls, 1, "the first use refreshes");
        let again = b.refresh(&authid);
        assert_eq!(again.json()["access_token"], r.json()["access_token"]);
        assert_eq!(b.mock.stats().refresh_calls, 1, "then it is cached");
    }
    // A weak secret in oauth-handler's spelling is refused like ours.
    let keyid = &handler_authid(30)[..30];
    for weak in ["aaaaaaaaaaaaaaaaaaaaa", "a1a1a1a1a1a1a1a1a1a1a"] {
        let r = import(
            b,
            Some(&format!("{keyid}:{weak}")),
            r#"{"refresh_token":"x","service":"box.com"}"#,
        );
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"], "weak_authid");
    }
    b.reset_mock();
}

fn importing_again_overwrites_until_the_first_refresh_and_another_secret_never(b: &Broker) {
    let authid = handler_authid(30);
    b.remember(&authid);
    stored_at_handler(b, &authid);
    let first = export_from_handler(b, &authid).body;
    assert_eq!(import(b, Some(&authid), &first).status, 200);
    // The old service refreshed meanwhile (new tokens): import them again.
    stored_at_handler(b, &authid);
    let second = export_from_handler(b, &authid).body;
    let r = import(b, Some(&authid), &second);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["replaced"], true);
    // The first grant's refresh token dies at the provider: only the
    // overwrite (the second grant) can still refresh.
    let first_rt = serde_json::from_str::<serde_json::Value>(&first).expect("json")
        ["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let revoked = request(
        "POST",
        &format!("{}/revoke", b.mock.base_url()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!(
            "token={}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}",
            url::form_urlencoded::byte_serialize(first_rt.as_bytes()).collect::<String>()
        )),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    b.mock.reset_stats();
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200, "the overwritten grant is served: {}", r.body);
    assert_eq!(b.mock.stats().refresh_successes, 1);
    // Refreshed here now: a further import would replace newer tokens with
    // older ones, so it is refused and the grant keeps working.
    let r = import(b, Some(&authid), &second);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["error"], "grant_in_use");
    assert_eq!(b.refresh(&authid).status, 200);
    // Same keyid, another secret: 409, and the stored grant still works.
    let (keyid, _) = authid.split_once(':').expect("colon");
    let other = format!("{keyid}:{}", service_password(21));
    let r = import(b, Some(&other), &second);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["error"], "authid_exists");
    assert_eq!(b.refresh(&authid).status, 200);
    b.reset_mock();
}

/// Claims and writes compare-and-swap on the row's version: a row stored
/// again under the same authid (revoked, then imported again) must not start
/// at the version a request may still hold from the deleted row.
fn a_grant_stored_again_under_a_revoked_authid_never_restarts_its_version(b: &Broker) {
    let authid = server_authid();
    b.remember(&authid);
    let version = || {
        let kh = crate::core_flow::key_hash(&authid);
        b.d1(&format!(
            "SELECT version FROM grants WHERE key_hash = '{kh}'"
        ))[0]["version"]
            .as_i64()
            .expect("version")
    };
    stored_at_handler(b, &authid);
    assert_eq!(
        import(b, Some(&authid), &export_from_handler(b, &authid).body).status,
        200
    );
    let first = version();
    let revoked = b.post_form(
        "/revoked",
        &format!(
            "authid={}",
            url::form_urlencoded::byte_serialize(authid.as_bytes()).collect::<String>()
        ),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    stored_at_handler(b, &authid);
    assert_eq!(
        import(b, Some(&authid), &export_from_handler(b, &authid).body).status,
        200
    );
    let second = version();
    assert_ne!(first, second, "a re-inserted row starts at a fresh version");
    assert!(first != 1 && second != 1, "{first} {second}");
    assert_eq!(b.refresh(&authid).status, 200);
    b.reset_mock();
}

fn an_oauth_handler_authid_moves_lazily_on_its_first_refresh(b: &Broker) {
    let authid = handler_authid(31);
    b.remember(&authid);
    stored_at_handler(b, &authid);
    let rows = grant_rows(b);
    b.mock.reset_stats();
    // The Duplicati token call, unchanged (X-AuthID header).
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["type"], "box.com");
    let s = b.mock.stats();
    assert_eq!(s.handler_exports, 1, "asked the old service once");
    assert_eq!(s.refresh_calls, 1, "and refreshed the moved grant");
    assert_eq!(grant_rows(b), rows + 1, "sealed here");
    // From now on it is ours: cached, and the old service is not asked again.
    let again = b.refresh(&authid);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["access_token"], r.json()["access_token"]);
    assert_eq!(b.mock.stats().handler_exports, 1);
    // Same keyid, wrong password: 401, and the old service is not asked (the
    // grant is here now and never replaced by a move).
    let (keyid, _) = authid.split_once(':').expect("colon");
    let wrong = format!("{keyid}:{}", service_password(21));
    let r = b.refresh(&wrong);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(b.mock.stats().handler_exports, 1);
    // Unknown at the old service too (404 No such key), or known with another
    // password (400 Invalid authid password): 401 like any unknown authid,
    // and nothing stored.
    let elsewhere = handler_authid(30);
    stored_at_handler(b, &elsewhere);
    let (keyid, _) = elsewhere.split_once(':').expect("colon");
    for unknown in [
        handler_authid(32),
        format!("{keyid}:{}", service_password(21)),
    ] {
        let r = b.refresh(&unknown);
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"], "unknown_authid");
    }
    assert_eq!(b.mock.stats().handler_exports, 3);
    assert_eq!(grant_rows(b), rows + 1, "nothing stored for them");
    // Authids the oauth-handler never issued are never sent to it.
    for never in [
        server_authid(),
        format!("{}:{}", "ab".repeat(16), "k".repeat(43)),
    ] {
        assert_eq!(b.refresh(&never).status, 401);
    }
    assert_eq!(b.mock.stats().handler_exports, 3);
    b.reset_mock();
}

fn concurrent_first_refreshes_move_one_grant_and_refresh_it_once(b: &Broker) {
    let authid = handler_authid(32);
    b.remember(&authid);
    stored_at_handler(b, &authid);
    let rows = grant_rows(b);
    b.mock.reset_stats();
    let base = Arc::new(b.url("/refresh"));
    let authid = Arc::new(authid);
    let answers: Vec<Resp> = (0..10)
        .map(|_| {
            let (base, authid) = (Arc::clone(&base), Arc::clone(&authid));
            thread::spawn(move || request("GET", &base, &[("X-AuthID", authid.as_str())], None))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let first = &answers[0].json()["access_token"];
    assert!(answers.iter().all(|r| &r.json()["access_token"] == first));
    let s = b.mock.stats();
    assert_eq!(s.refresh_calls, 1, "one upstream refresh");
    assert_eq!(s.spent_refresh_reuse, 0);
    assert!((1..=10).contains(&s.handler_exports));
    assert_eq!(grant_rows(b), rows + 1, "one grant");
    b.reset_mock();
}

fn an_unreachable_oauth_handler_is_a_retryable_error_and_stores_nothing(b: &Broker) {
    // A broker whose oauth-handler does not answer (nothing listens there).
    let closed = format!("http://127.0.0.1:{}/h", free_port());
    let down = Broker::start_with(
        &b.mock,
        Options {
            extra_vars: vec![("OAUTH_HANDLER_URL".into(), closed)],
            ..Options::default()
        },
    );
    let authid = handler_authid(30);
    down.remember(&authid);
    b.remember(&authid);
    stored_at_handler(b, &authid);
    let r = down.refresh(&authid);
    // Duplicati retries a 5xx other than 503 (OAuthHelper: 503 is final).
    assert!(
        r.status == 502 || r.status == 504,
        "{}: {}",
        r.status,
        r.body
    );
    assert!(r.header("X-Reason").is_some());
    assert_eq!(grant_rows(&down), 0, "nothing stored");
}

/// The export call carries the operator's API key and brings back a refresh
/// token: over plain http to anything but a loopback host both would cross
/// the network in the clear, so that setting is refused, and only the
/// routes that need it fail.
fn a_plain_http_oauth_handler_url_is_server_misconfigured(b: &Broker) {
    let plain = Broker::start_with(
        &b.mock,
        Options {
            extra_vars: vec![(
                "OAUTH_HANDLER_URL".into(),
                "http://oauth-handler.example/h".into(),
            )],
            ..Options::default()
        },
    );
    let authid = handler_authid(31);
    plain.remember(&authid);
    b.remember(&authid);
    stored_at_handler(b, &authid);
    b.mock.reset_stats();
    let r = plain.refresh(&authid);
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["error"], "server_misconfigured");
    assert!(
        r.header("X-Reason")
            .is_some_and(|x| x.contains("OAUTH_HANDLER_URL") && x.contains("https")),
        "{:?}",
        r.header("X-Reason")
    );
    assert_eq!(b.mock.stats().handler_exports, 0);
    // Our own authids never need the old service: they keep working.
    let own = plain.login();
    let r = plain.refresh(&own);
    assert_eq!(r.status, 200, "{}", r.body);
    b.reset_mock();
}

/// Each made-up authid in oauth-handler's spelling would be an export call
/// with the operator's key; one the old service did not know is answered
/// "unknown" from memory for a minute. The memory is keyed by the whole
/// authid: the same keyid with another password is asked for.
fn an_unknown_handler_authid_is_asked_for_once_then_answered_from_the_negative_cache(b: &Broker) {
    // The memory lasts 60 s: a run that took longer than that proves nothing
    // and is made again (never an assertion about time).
    let mut runs = 0;
    let (first, repeats, exports, other, after_other) = loop {
        runs += 1;
        let unknown = handler_authid(31);
        b.remember(&unknown);
        b.mock.reset_stats();
        let started = Instant::now();
        let first = b.refresh(&unknown);
        let exports_first = b.mock.stats().handler_exports;
        let repeats: Vec<Resp> = (0..3).map(|_| b.refresh(&unknown)).collect();
        let exports = b.mock.stats().handler_exports;
        if started.elapsed() > Duration::from_secs(50) && runs < 3 {
            println!("    (the run took over 50 s; running it again)");
            continue;
        }
        assert_eq!(exports_first, 1, "the first refresh asks the old service");
        let (keyid, _) = unknown.split_once(':').expect("colon");
        let sibling = format!("{keyid}:{}", service_password(21));
        b.remember(&sibling);
        let other = b.refresh(&sibling);
        break (
            first,
            repeats,
            exports,
            other,
            b.mock.stats().handler_exports,
        );
    };
    assert_eq!(first.status, 401, "{}", first.body);
    assert_eq!(first.json()["error"], "unknown_authid");
    for r in &repeats {
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.json()["error"], "unknown_authid", "answered alike");
    }
    assert_eq!(exports, 1, "the repeats were answered from memory");
    assert_eq!(other.status, 401, "{}", other.body);
    assert_eq!(
        after_other, 2,
        "another password is another authid: asked for"
    );
    // A grant the old service holds still moves.
    let known = handler_authid(30);
    b.remember(&known);
    stored_at_handler(b, &known);
    assert_eq!(b.refresh(&known).status, 200);
    b.reset_mock();
}

/// Every export call spends the client's `RL_MOVE_PER_IP`; over it the
/// refresh is a 429 and no call is made. What makes no call spends nothing:
/// a repeat answered from memory, an authid stored here.
fn moving_from_oauth_handler_has_a_per_ip_budget(b: &Broker) {
    const MOVES: usize = 3;
    let w = Broker::start_with(
        &b.mock,
        Options {
            move_per_ip_limit: MOVES as u32,
            ..Options::default()
        },
    );
    let own = w.login();
    let mut run = 0u8;
    let (seen, exports) = in_one_rate_limit_window(|| {
        run += 1;
        b.mock.reset_stats();
        let (x, y) = (
            format!("203.0.113.{}", 60 + run),
            format!("203.0.113.{}", 70 + run),
        );
        let mut seen: Vec<(String, u16)> = Vec::new();
        let mut refresh = |what: &str, ip: &str, authid: &str| {
            let r = w.get_with(
                "/refresh",
                &[("X-AuthID", authid), ("CF-Connecting-IP", ip)],
            );
            let what = match (r.status, r.header("Retry-After")) {
                (429, None) => format!("{what} (no Retry-After)"),
                _ => what.to_string(),
            };
            seen.push((what, r.status));
        };
        let unknown: Vec<String> = (0..=MOVES).map(|_| handler_authid(31)).collect();
        for a in &unknown {
            b.remember(a);
        }
        let (held_x, held_y) = (handler_authid(30), handler_authid(32));
        for a in [&held_x, &held_y] {
            b.remember(a);
            stored_at_handler(b, a);
        }
        for a in &unknown[..MOVES] {
            refresh("X: an unknown authid within the budget", &x, a);
        }
        refresh("X: an unknown authid again (from memory)", &x, &unknown[0]);
        refresh("X: an unknown authid over the budget", &x, &unknown[MOVES]);
        refresh("X: a held authid over the budget", &x, &held_x);
        refresh("X: an authid stored here", &x, &own);
        refresh("Y: a held authid from another address", &y, &held_y);
        (seen, b.mock.stats().handler_exports)
    });
    let mut want: Vec<(String, u16)> = (0..MOVES)
        .map(|_| ("X: an unknown authid within the budget".to_string(), 401))
        .collect();
    want.extend([
        ("X: an unknown authid again (from memory)".to_string(), 401),
        ("X: an unknown authid over the budget".to_string(), 429),
        ("X: a held authid over the budget".to_string(), 429),
        ("X: an authid stored here".to_string(), 200),
        ("Y: a held authid from another address".to_string(), 200),
    ]);
    assert_eq!(seen, want);
    assert_eq!(exports, MOVES as u64 + 1, "X's budget, and Y's one move");
    b.reset_mock();
    drop(w);
}

fn revoking_an_oauth_handler_authid_not_moved_yet_moves_it_then_revokes_it(b: &Broker) {
    for via in ["/oauth/revoke", "/revoked"] {
        let authid = handler_authid(32);
        b.remember(&authid);
        stored_at_handler(b, &authid);
        let before = b.mock.stats();
        let field = if via == "/revoked" { "authid" } else { "token" };
        let r = request(
            "POST",
            &b.url(via),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&format!(
                "{field}={}",
                url::form_urlencoded::byte_serialize(authid.as_bytes()).collect::<String>()
            )),
        );
        assert_eq!(r.status, 200, "{via}: {}", r.body);
        let after = b.mock.stats();
        assert_eq!(
            after.handler_exports,
            before.handler_exports + 1,
            "{via}: moved in"
        );
        assert_eq!(
            after.revoke_calls,
            before.revoke_calls + 1,
            "{via}: revoked upstream"
        );
        // Not moved again by the next refresh: revoked means revoked.
        assert_eq!(b.refresh(&authid).status, 401, "{via}: the authid is dead");
    }
}
