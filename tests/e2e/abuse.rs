//! Rate limits and abuse that costs the operator: the per-grant and per-IP
//! limits (429 with `Retry-After`), bodies read before their size is checked,
//! D1 writes and provider calls without a per-IP budget, authids and tokens of
//! the caller's choosing. Each test names the behaviour it proves. Which routes
//! count against the per-IP limit is the route table's (`routes.rs`).

use std::time::Duration;

use mock_provider::Config;
use oauth_broker::authid::AuthId;
use oauth_broker::ids::Shard;

use crate::device::{device_start, post_device};
use crate::harness::{
    in_one_rate_limit_window, raw_exchange, request, Broker, Jar, Options, Resp, ADMIN_API_KEY,
};

pub const TESTS: &[crate::Test] = tests![
    pass_through_refreshes_are_limited_per_48_refused_tokens_are_remembered_and_refusals_have_a_budget,
    a_body_declared_too_large_is_refused_before_any_of_it_is_read,
    a_chunked_body_is_refused_once_it_passes_the_cap_without_waiting_for_its_end,
    every_route_that_writes_to_d1_is_limited_per_client_address,
    v2_refreshes_have_a_per_ip_budget_and_garbage_never_reaches_the_provider,
    a_v2_refresh_token_of_any_characters_round_trips_through_its_authid,
    import_mints_the_authid_or_takes_only_one_that_could_have_been_minted,
    device_code_guessing_is_limited_per_48_and_globally_counting_only_misses,
    rate_limits_answer_429_with_retry_after_per_grant_and_per_ip,
];

/// Bounds every wait for an answer on a raw connection. Generous (a loaded
/// 2-core machine), and never an assertion about time: a worker that reads the
/// body first never answers at all, because the body never comes.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

fn is_html(r: &Resp) -> bool {
    r.header("Content-Type")
        .is_some_and(|c| c.starts_with("text/html"))
}

fn is_json(r: &Resp) -> bool {
    r.header("Content-Type")
        .is_some_and(|c| c.starts_with("application/json"))
}

/// A v1 authid whose secret could have come from our CSPRNG.
fn fresh_authid() -> String {
    AuthId::generate(Shard::FIRST).expect("CSPRNG").expose()
}

fn a_body_declared_too_large_is_refused_before_any_of_it_is_read(b: &Broker) {
    let addr = b
        .worker_socket()
        .expect("the worker's own socket (behind wrangler dev's proxy)");
    let authid = fresh_authid();
    // (path, extra headers, HTML page?) — the unauthenticated routes included.
    let routes: [(&str, String, bool); 3] = [
        ("/revoked", String::new(), true),
        ("/refresh", String::new(), false),
        (
            "/import",
            format!("X-APIKey: {ADMIN_API_KEY}\r\nX-AuthID: {authid}\r\n"),
            false,
        ),
    ];
    let mut problems = Vec::new();
    for (path, extra, page) in routes {
        // 100 MB declared, 7 bytes sent, then the request ends. A worker that
        // reads before it judges finds the body cut short (400 bad_body), or
        // waits for it; one that judges the declared length never looks at it.
        // (`wrangler dev` drains an unread body before passing the answer on,
        // so an answer while the body is still pending is not observable here.)
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCF-Connecting-IP: 127.0.0.1\r\n{extra}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\n\r\nauthid="
        );
        let Some(r) = raw_exchange(addr, head.as_bytes(), true, ANSWER_WITHIN) else {
            problems.push(format!("POST {path}: no answer"));
            continue;
        };
        if r.status != 400 || r.header("X-Error-Code") != Some("body_too_large") {
            problems.push(format!(
                "POST {path}: {} {:?} (want 400 body_too_large)",
                r.status,
                r.header("X-Error-Code")
            ));
        } else if page != is_html(&r) || page == is_json(&r) {
            problems.push(format!(
                "POST {path}: Content-Type {:?} on the wrong surface",
                r.header("Content-Type")
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn a_chunked_body_is_refused_once_it_passes_the_cap_without_waiting_for_its_end(b: &Broker) {
    let addr = b
        .worker_socket()
        .expect("the worker's own socket (behind wrangler dev's proxy)");
    // No Content-Length: five 4 KiB chunks (20 KiB, over the 16 KiB cap) and no
    // final zero-length chunk, so the body never ends.
    let mut wire = b"POST /revoked HTTP/1.1\r\nHost: 127.0.0.1\r\nCF-Connecting-IP: 127.0.0.1\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..5 {
        wire.extend_from_slice(b"1000\r\n");
        wire.extend_from_slice(&[b'a'; 4096]);
        wire.extend_from_slice(b"\r\n");
    }
    let r =
        raw_exchange(addr, &wire, false, ANSWER_WITHIN).expect("an answer while the body goes on");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("X-Error-Code"), Some("body_too_large"));
    assert!(is_html(&r), "POST /revoked is a page route");
    // A chunked body under the cap is read whole (and then judged as usual).
    let small = b"POST /revoked HTTP/1.1\r\nHost: 127.0.0.1\r\nCF-Connecting-IP: 127.0.0.1\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n7\r\nauthid=\r\n3\r\nbad\r\n0\r\n\r\n";
    let r = raw_exchange(addr, small, false, ANSWER_WITHIN).expect("an answer");
    assert_eq!(r.header("X-Error-Code"), Some("malformed_authid"));
}

/// `/`, `/token-state` and `/callback/*` write to D1 (a hand-off registration; the
/// `DELETE … RETURNING` of a collected hand-off or a login state). Over the limit
/// they answer 429 like the other limited routes and write nothing, while another
/// address still gets through.
fn every_route_that_writes_to_d1_is_limited_per_client_address(b: &Broker) {
    const LIMIT: u32 = 10;
    let w = Broker::start_with(
        &b.mock,
        Options {
            per_ip_limit: LIMIT,
            ..Options::default()
        },
    );
    let a = [("CF-Connecting-IP", "203.0.113.10")];
    let other = [("CF-Connecting-IP", "2001:db8:7:7::1")];
    let token = |who: &str| format!("abuse-{who}-{}", &fresh_authid()[..12]);
    let writes = |t: &str| {
        [
            (format!("/?token={t}"), true),
            (format!("/token-state?token={t}"), false),
            ("/callback/demo?code=c&state=s".to_string(), true),
        ]
    };
    let (exhausted, limited, passed, ta, tb) = in_one_rate_limit_window(|| {
        let (ta, tb) = (token("a"), token("b"));
        let exhausted = (0..3 * LIMIT).any(|_| w.get_with("/fetch?token=x", &a).status == 429);
        let limited: Vec<(String, bool, Resp)> = writes(&ta)
            .into_iter()
            .map(|(p, page)| {
                let r = w.get_with(&p, &a);
                (p, page, r)
            })
            .collect();
        let passed: Vec<(String, u16)> = writes(&tb)
            .into_iter()
            .map(|(p, _)| {
                let s = w.get_with(&p, &other).status;
                (p, s)
            })
            .collect();
        (exhausted, limited, passed, ta, tb)
    });
    assert!(exhausted, "GET /fetch never reached the limit of {LIMIT}");
    let mut problems = Vec::new();
    for (path, page, r) in &limited {
        if r.status != 429 || r.header("X-Error-Code") != Some("rate_limited") {
            problems.push(format!(
                "GET {path} over the limit: {} {:?}",
                r.status,
                r.header("X-Error-Code")
            ));
        } else if r.header("Retry-After").is_none() || *page != is_html(r) {
            problems.push(format!(
                "GET {path}: Retry-After {:?}, Content-Type {:?}",
                r.header("Retry-After"),
                r.header("Content-Type")
            ));
        }
    }
    let want = [200, 200, 400]; // index, token-state, a callback with a forged state
    for ((path, status), want) in passed.iter().zip(want) {
        if *status != want {
            problems.push(format!("GET {path} from another address: {status}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The refused index request registered nothing; the other address's did.
    let fetch = |t: &str| w.get_with(&format!("/fetch?token={t}"), &other).json();
    assert_eq!(fetch(&ta)["error"], "No such entry", "a 429 wrote nothing");
    assert_eq!(
        fetch(&tb)["wait"],
        "Not ready",
        "under the limit it registers"
    );
    drop(w);
}

fn v2_refreshes_have_a_per_ip_budget_and_garbage_never_reaches_the_provider(b: &Broker) {
    const V2_LIMIT: u32 = 4;
    let w = Broker::start_with(
        &b.mock,
        Options {
            per_ip_v2_limit: V2_LIMIT,
            ..Options::default()
        },
    );
    // Obvious garbage is answered locally: no token-endpoint call, no budget spent.
    b.mock.reset_stats();
    let garbage = [
        "v2:demo:x".to_string(),
        "v2:demo:sometoken".to_string(),
        format!("v2:demo:{}", "a".repeat(200)),
        format!("v2:box.com:{}", "ab".repeat(40)),
        "v2:demo:0000000000000000000000000000".to_string(),
        "v2:demo:%ZZ".to_string(),
    ];
    let ip = |n: u8| format!("198.51.100.{n}");
    for g in &garbage {
        let r = request(
            "GET",
            &w.url("/refresh"),
            &[("X-AuthID", g), ("CF-Connecting-IP", &ip(1))],
            None,
        );
        assert_eq!(r.status, 400, "garbage answered locally: {}", r.body);
        assert_eq!(r.json()["error"], "malformed_authid");
    }
    assert_eq!(
        b.mock.stats().token_calls,
        0,
        "garbage v2 authids reached the provider"
    );
    // A flood of plausible v2 authids from one address: each is a new grant (a
    // new per-grant bucket) and would be a provider call; the address's v2 budget
    // runs out, another address's does not.
    let plausible = || format!("v2:demo:{}", fresh_authid().replace(':', "."));
    let (statuses, other) = in_one_rate_limit_window(|| {
        b.mock.reset_stats();
        let statuses: Vec<u16> = (0..3 * V2_LIMIT)
            .map(|_| {
                let authid = plausible();
                let h = [
                    ("X-AuthID", authid.as_str()),
                    ("CF-Connecting-IP", "198.51.100.2"),
                ];
                w.get_with("/refresh", &h).status
            })
            .collect();
        let authid = plausible();
        let h = [
            ("X-AuthID", authid.as_str()),
            ("CF-Connecting-IP", "198.51.100.3"),
        ];
        (statuses, w.get_with("/refresh", &h).status)
    });
    let upstream = b.mock.stats().refresh_calls;
    assert!(statuses.contains(&429), "no 429 in {statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s != 429).count() <= V2_LIMIT as usize,
        "{statuses:?}"
    );
    assert!(
        upstream <= u64::from(V2_LIMIT) + 1,
        "{upstream} provider calls"
    );
    assert_ne!(other, 429, "the budget is per address");
    // A real v2 authid from an address with budget left refreshes as before.
    let v2 = w.login_at("/login?id=demo&tokenversion=2");
    let r = request(
        "GET",
        &w.url("/refresh"),
        &[("X-AuthID", &v2), ("CF-Connecting-IP", &ip(4))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    if let Some(next) = r.json()["v2_authid"].as_str() {
        b.remember(next);
    }
    b.remember(&v2);
    drop(w);
}

/// RFC 6749 lets a refresh token hold any visible ASCII and spaces, and a JSON
/// answer may carry anything; the v2 authid escapes what its grammar cannot
/// hold, so each rotated token comes back as an authid the broker accepts.
fn a_v2_refresh_token_of_any_characters_round_trips_through_its_authid(b: &Broker) {
    b.mock.set_config(Config {
        refresh_token_prefix: "mock RT é%41:+/ \t~".to_string(),
        ..Config::default() // single-use rotation
    });
    b.mock.reset_stats();
    let mut authid = b.login_at("/login?id=demo&tokenversion=2");
    for round in 0..3 {
        assert!(
            authid.starts_with("v2:demo:") && authid.bytes().all(|c| (0x21..=0x7e).contains(&c)),
            "round {round}: the authid is one token of visible ASCII"
        );
        let r = b.refresh(&authid);
        assert_eq!(r.status, 200, "round {round}: {}", r.body);
        authid = r.json()["v2_authid"]
            .as_str()
            .expect("v2_authid")
            .to_string();
        b.remember(&authid);
    }
    let stats = b.mock.stats();
    assert_eq!(stats.refresh_successes, 3);
    assert_eq!(stats.spent_refresh_reuse, 0);
    b.reset_mock();
}

fn import_mints_the_authid_or_takes_only_one_that_could_have_been_minted(b: &Broker) {
    let original = b.login();
    let key = [("X-APIKey", ADMIN_API_KEY), ("X-AuthID", original.as_str())];
    let exported = b.get_with("/export", &key);
    assert_eq!(exported.status, 200, "{}", exported.body);
    let keyid = "0f".repeat(16);
    let weak = [
        format!("{keyid}:{}", "k".repeat(43)),
        format!("{keyid}:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"),
        format!("{keyid}:password-password-password-passw"),
        format!("{keyid}:{}", "0123456789".repeat(4) + "012"),
    ];
    for chosen in &weak {
        let r = request(
            "POST",
            &b.url("/import"),
            &[("X-APIKey", ADMIN_API_KEY), ("X-AuthID", chosen)],
            Some(&exported.body),
        );
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"], "weak_authid");
        assert!(r.header("X-Reason").is_some_and(|x| x.contains("X-AuthID")));
    }
    // Without X-AuthID the broker mints the authid and shows it, once, to the operator.
    let r = request(
        "POST",
        &b.url("/import"),
        &[("X-APIKey", ADMIN_API_KEY)],
        Some(&exported.body),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["imported"], true);
    let minted = v["authid"].as_str().expect("minted authid").to_string();
    b.remember(&minted);
    assert_ne!(minted, original);
    let r = b.refresh(&minted);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `RL_USER_CODE` keys each /64 (and IPv4 address) alone, so a network with
/// many addresses could guess user codes on each. Missed lookups also spend a
/// budget per network (the IPv6 /48, the IPv4 /24) and one for everyone; a
/// right code spends neither. A spent budget refuses every code check under
/// it (429) until the window ends, right codes included; other networks keep
/// theirs until the global one is spent.
fn device_code_guessing_is_limited_per_48_and_globally_counting_only_misses(b: &Broker) {
    const NETWORK: usize = 3;
    const GLOBAL: usize = 10;
    let w = Broker::start_with(
        &b.mock,
        Options {
            user_code_network_limit: NETWORK as u32,
            user_code_global_limit: GLOBAL as u32,
            ..Options::default()
        },
    );
    let v = device_start(&w);
    let right = v["user_code"].as_str().expect("user_code").to_string();
    // A code nobody was given (20^8 codes: drawn for a live one, one in 2^34).
    let wrong = if right == "BCDF-GHJK" {
        "BCDF-GHJL"
    } else {
        "BCDF-GHJK"
    };
    let mut run = 0u32;
    let seen = in_one_rate_limit_window(|| {
        // Fresh networks on every run: nothing carries over from a run the
        // clock cut short.
        run += 1;
        let mut seen: Vec<(String, u16, String)> = Vec::new();
        let mut check = |what: &str, ip: String, code: &str| {
            let r = post_device(&w, &mut Jar::default(), &ip, &format!("user_code={code}"));
            let err = r.header("X-Error-Code").unwrap_or_default().to_string();
            if r.status == 429 && r.header("Retry-After").is_none() {
                seen.push((format!("{what} (no Retry-After)"), r.status, err));
            } else {
                seen.push((what.to_string(), r.status, err));
            }
        };
        // IPv6 network A (a /48); each check from another /64 of it, so the
        // per-/64 RL_USER_CODE never decides.
        let a = |n: usize| format!("2001:db8:{run:x}a:{n:x}::1");
        for n in 0..NETWORK + 2 {
            check("A: a right code (more than the budget)", a(n), &right);
        }
        for n in 0..NETWORK {
            check("A: a miss within the budget", a(0x100 + n), wrong);
        }
        check("A: the miss over the budget", a(0x200), wrong);
        check("A: a right code after it", a(0x201), &right);
        check(
            "B: a right code from another /48",
            format!("2001:db8:{run:x}b::1"),
            &right,
        );
        // IPv4 network D (a /24), one address per check.
        let d = |n: usize| format!("198.51.{}.{}", 100 + run, 10 + n);
        for n in 0..NETWORK {
            check("D: a miss within the budget", d(n), wrong);
        }
        check("D: the miss over the budget", d(NETWORK), wrong);
        check("D: a right code after it", d(NETWORK + 1), &right);
        check(
            "D: a right code from the next /24",
            format!("198.51.{}.1", 110 + run),
            &right,
        );
        // Everyone: so far 2 × (NETWORK + 1) misses; one new network per
        // miss (never its own budget) up to the global limit, then over it.
        for n in 0..GLOBAL - 2 * (NETWORK + 1) {
            check(
                "C: a miss within the global budget",
                format!("2001:db8:{run:x}c{n:x}::1"),
                wrong,
            );
        }
        check(
            "C: the miss over the global budget",
            format!("2001:db8:{run:x}cf::1"),
            wrong,
        );
        check(
            "E: a right code from a network that never missed",
            format!("2001:db8:{run:x}e::1"),
            &right,
        );
        seen
    });
    let ok = |what: &str| (what.to_string(), 200, String::new());
    let miss = |what: &str| (what.to_string(), 400, "unknown_user_code".to_string());
    let limited = |what: &str| (what.to_string(), 429, "rate_limited".to_string());
    let mut want = Vec::new();
    want.extend((0..NETWORK + 2).map(|_| ok("A: a right code (more than the budget)")));
    want.extend((0..NETWORK).map(|_| miss("A: a miss within the budget")));
    want.push(limited("A: the miss over the budget"));
    want.push(limited("A: a right code after it"));
    want.push(ok("B: a right code from another /48"));
    want.extend((0..NETWORK).map(|_| miss("D: a miss within the budget")));
    want.push(limited("D: the miss over the budget"));
    want.push(limited("D: a right code after it"));
    want.push(ok("D: a right code from the next /24"));
    want.extend(
        (0..GLOBAL - 2 * (NETWORK + 1)).map(|_| miss("C: a miss within the global budget")),
    );
    want.push(limited("C: the miss over the global budget"));
    want.push(limited("E: a right code from a network that never missed"));
    assert_eq!(seen, want);
    drop(w);
}

fn pass_through_refreshes_are_limited_per_48_refused_tokens_are_remembered_and_refusals_have_a_budget(
    b: &Broker,
) {
    let w = Broker::start_with(
        &b.mock,
        Options {
            v2_network_limit: 3,
            v2_refusal_limit: 2,
            ..Options::default()
        },
    );
    let refresh = |authid: &str, ip: &str| {
        request(
            "GET",
            &w.url("/refresh"),
            &[("X-AuthID", authid), ("CF-Connecting-IP", ip)],
            None,
        )
    };
    // Made up: the provider refuses them.
    let plausible = || format!("v2:demo:{}", fresh_authid().replace(':', "."));
    // Real ones: the provider's own refresh tokens.
    let real = || {
        let grant = b.mock.issue_grant();
        let rt = grant["refresh_token"].as_str().expect("refresh_token");
        oauth_broker::authid::v2_authid(
            "demo",
            &oauth_broker::secret::RefreshToken::new(rt.to_string()),
        )
    };
    // Per network: four /64s of one /48 share its budget of 3.
    let statuses = in_one_rate_limit_window(|| {
        (0..4)
            .map(|n| refresh(&real(), &format!("2001:db8:48:{n:x}::1")).status)
            .collect::<Vec<_>>()
    });
    assert!(statuses[..3].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[3], 429, "the /48's budget is spent: {statuses:?}");
    // A token the provider refused is answered from memory: one call, not two.
    let stats = in_one_rate_limit_window(|| {
        b.mock.reset_stats();
        b.mock.set_config(Config {
            invalid_grant: true,
            ..Config::default()
        });
        let refused = plausible();
        let first = refresh(&refused, "198.51.100.70");
        let again = refresh(&refused, "198.51.100.71");
        let calls = b.mock.stats().refresh_calls;
        // Refusals spend the provider's refusal budget (2 a minute): the
        // third refusal goes over it, and then a new token is refused before
        // any provider call.
        let second = refresh(&plausible(), "198.51.100.72");
        let third = refresh(&plausible(), "198.51.100.73");
        let next = refresh(&plausible(), "198.51.100.74");
        let after = b.mock.stats().refresh_calls;
        b.mock.set_config(Config::default());
        let statuses = [first.status, again.status, second.status, third.status];
        (statuses, calls, next.status, after)
    });
    let (statuses, calls, next, after) = stats;
    assert_eq!(statuses, [503; 4], "a refusal asks for a new login");
    assert_eq!(calls, 1, "the refused token went to the provider once");
    assert_eq!(next, 429, "the provider's refusal budget is spent");
    assert_eq!(
        after, 3,
        "the token after the budget was spent never reached the provider"
    );
}

fn rate_limits_answer_429_with_retry_after_per_grant_and_per_ip(b: &Broker) {
    let limited = Broker::start_with(
        &b.mock,
        Options {
            per_grant_limit: 5,
            per_ip_limit: 25,
            ..Options::default()
        },
    );
    // Every count below must land in one window of the local limiter (nothing
    // limited has hit this fresh worker before).
    let (statuses, over, other_grant, hit, login, healthz) = in_one_rate_limit_window(|| {
        let first = limited.login();
        let second = limited.login();
        let statuses: Vec<u16> = (0..8).map(|_| limited.refresh(&first).status).collect();
        let over = limited.refresh(&first);
        let other_grant = limited.refresh(&second).status;
        // Per IP: /fetch (and every other limited route) from this address runs out.
        let hit = (0..30).any(|_| limited.get("/fetch?token=abc").status == 429);
        let login = limited.get("/login?id=demo");
        let healthz = limited.get("/healthz").status;
        (statuses, over, other_grant, hit, login, healthz)
    });
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    assert_eq!(over.status, 429, "{statuses:?}");
    assert_eq!(over.header("Retry-After"), Some("60"));
    assert_eq!(over.json()["error"], "rate_limited");
    assert!(over
        .header("X-Reason")
        .is_some_and(|r| r.contains("retry after")));
    assert_eq!(other_grant, 200, "the limit is per grant");
    assert!(hit, "per-IP limit reached");
    assert_eq!(login.status, 429);
    assert!(login
        .header("Content-Type")
        .unwrap_or("")
        .starts_with("text/html"));
    assert_eq!(healthz, 200, "liveness is never limited");
}
