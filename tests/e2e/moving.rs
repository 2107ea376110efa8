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

use crate::harness::{
    free_port, request, Broker, Options, Resp, ADMIN_API_KEY, CLIENT_ID, CLIENT_SECRET,
};

pub const TESTS: &[crate::Test] = &[
    (
        "duplicati_service_authids_import_from_an_oauth_handler_export_as_is",
        duplicati_service_authids_import_from_an_oauth_handler_export_as_is,
    ),
    (
        "importing_again_overwrites_until_the_first_refresh_and_another_secret_never",
        importing_again_overwrites_until_the_first_refresh_and_another_secret_never,
    ),
    (
        "a_grant_stored_again_under_a_revoked_authid_never_restarts_its_version",
        a_grant_stored_again_under_a_revoked_authid_never_restarts_its_version,
    ),
    (
        "an_oauth_handler_authid_moves_lazily_on_its_first_refresh",
        an_oauth_handler_authid_moves_lazily_on_its_first_refresh,
    ),
    (
        "concurrent_first_refreshes_move_one_grant_and_refresh_it_once",
        concurrent_first_refreshes_move_one_grant_and_refresh_it_once,
    ),
    (
        "an_unreachable_oauth_handler_is_a_retryable_error_and_stores_nothing",
        an_unreachable_oauth_handler_is_a_retryable_error_and_stores_nothing,
    ),
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
