//! Never lose a grant at `/refresh`: single-flight refresh across concurrent
//! requests (one upstream call however many ask), failure semantics that leave
//! the stored grant untouched (provider 5xx or garbage, `invalid_grant`, D1
//! down, a crashed winner's lease), and what clients, providers and the
//! platform do mid-refresh: a client that hangs up, a provider that answers
//! after the client gave up, a waiter that would claim the lease too late to be
//! answered in time. The OAuth doors' side of the promise (code and device
//! redemption, replays) is `promise.rs`; every door under every fault, as one
//! table, is `doors.rs`.

use std::time::{Duration, Instant};

use mock_provider::{Config, Rotation};

use crate::harness::{get_and_hang_up, try_request_bytes, wait_for, Broker, Options, Resp};

pub const TESTS: &[crate::Test] = tests![
    fifty_concurrent_refreshes_single_use_rotation_one_upstream_call => |b| fifty_concurrent_refreshes(b, Rotation::SingleUse),
    fifty_concurrent_refreshes_keep_old_rotation_one_upstream_call => |b| fifty_concurrent_refreshes(b, Rotation::KeepOld),
    fifty_concurrent_refreshes_no_rotation_one_upstream_call => |b| fifty_concurrent_refreshes(b, Rotation::Never),
    ten_grants_refreshed_concurrently_make_ten_upstream_calls_without_cross_talk,
    provider_5xx_is_502_grant_untouched_and_recovers,
    malformed_provider_json_is_502_grant_untouched,
    invalid_grant_is_remembered_and_never_retried_upstream,
    d1_failure_is_a_retryable_500_storage_unavailable,
    a_crashed_winners_lease_expires_and_the_grant_refreshes,
    a_lease_held_past_the_wait_budget_gives_a_retryable_504,
    a_client_that_hangs_up_mid_refresh_loses_no_grant,
    a_provider_answering_after_the_client_gave_up_still_has_its_rotated_token_kept,
    a_late_waiter_answers_retryably_within_the_clients_25_s_and_leaves_the_lease_free,
];

/// A grant whose access token the broker already considers expired (30 s < 60 s),
/// with the mock switched back to 1-hour tokens and `rotation` for the refresh.
fn expired_grant(b: &Broker, rotation: Rotation) -> String {
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authid = b.login();
    b.mock.set_config(Config {
        rotation,
        ..Config::default()
    });
    b.mock.reset_stats();
    authid
}

/// The stored row's ciphertext, nonce and version.
fn row(b: &Broker, authid: &str) -> serde_json::Value {
    let kh = crate::core_flow::key_hash(authid);
    b.d1(&format!(
        "SELECT nonce, ciphertext, version, status, lease_until FROM grants WHERE key_hash = '{kh}'"
    ))[0]
        .clone()
}

fn concurrently_try(
    n: usize,
    f: impl Fn(usize) -> Result<Resp, String> + Sync,
) -> Vec<Result<Resp, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn({
                    let f = &f;
                    move || f(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("client thread panicked".into()))
            })
            .collect()
    })
}

fn concurrently(n: usize, f: impl Fn(usize) -> Resp + Sync) -> Vec<Resp> {
    concurrently_try(n, |i| Ok(f(i)))
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("client: {e}")))
        .collect()
}

/// Fifty concurrent refreshes of one grant (`results`, the answers that came)
/// kept the single flight: each a 200 or a 504 `pending_error`, at least 45
/// served, all the same access token, and the mock saw exactly one upstream
/// refresh and no spent refresh token. Prints `label` and the counts; returns
/// the mock's counters and the token. (Also `oauth_token.rs`'s proof.)
pub(crate) fn assert_single_flight(
    b: &Broker,
    results: &[Resp],
    pending_error: &str,
    label: &str,
) -> (mock_provider::Stats, String) {
    let mut tokens = std::collections::BTreeSet::new();
    for r in results {
        match r.status {
            200 => {
                tokens.insert(r.json()["access_token"].as_str().unwrap_or("").to_string());
            }
            504 => assert_eq!(r.json()["error"], pending_error),
            other => panic!("unexpected status {other}: {}", r.body),
        }
    }
    let ok = results.iter().filter(|r| r.status == 200).count();
    let s = b.mock.stats();
    println!(
        "    {label}{ok}/50 served, {} upstream refresh call(s)",
        s.refresh_calls
    );
    assert_eq!(s.refresh_calls, 1, "exactly one upstream refresh");
    assert_eq!(s.spent_refresh_reuse, 0, "no spent refresh token upstream");
    assert!(
        ok >= 45,
        "most requests are served the winner's token ({ok})"
    );
    assert_eq!(tokens.len(), 1, "everyone got the winner's token");
    let token = tokens.into_iter().next().expect("token");
    (s, token)
}

fn fifty_concurrent_refreshes(b: &Broker, rotation: Rotation) {
    let authid = expired_grant(b, rotation);
    // Fifty clients with Duplicati-like patience (its token call gives up
    // after 25 s; these wait 90 s): on a loaded 2-core machine the local
    // runtime has been seen to leave a request of such a burst unanswered for
    // minutes. A client that gives up is what the single flight must survive
    // anyway (one upstream call, no spent token); only a few may.
    let attempts = concurrently_try(50, |_| {
        try_request_bytes(
            "GET",
            &b.url("/refresh"),
            &[("X-AuthID", authid.as_str())],
            None,
            Duration::from_secs(90),
        )
    });
    let gave_up = attempts.iter().filter(|r| r.is_err()).count();
    if gave_up > 0 {
        println!("    {gave_up} of 50 clients got no answer in 90 s and gave up");
    }
    assert!(gave_up <= 5, "{gave_up} of 50 clients got no answer");
    let results: Vec<Resp> = attempts.into_iter().filter_map(Result::ok).collect();
    // A client that gave up left its request running: give the runtime time
    // to finish it before the counters are read.
    if gave_up > 0 {
        std::thread::sleep(Duration::from_secs(10));
    }
    let (s, token) =
        assert_single_flight(b, &results, "refresh_pending", &format!("{rotation:?}: "));
    assert_eq!(s.max_concurrent_refresh, 1);
    assert!(s.issued_access_tokens.contains(&token));
    // The grant still refreshes upstream afterwards: expire its cached token.
    b.expire_access_token(&authid);
    let next = b.refresh(&authid);
    assert_eq!(next.status, 200, "{}", next.body);
    let after = b.mock.stats();
    assert_eq!(after.refresh_calls, 2);
    assert_eq!(after.spent_refresh_reuse, 0);
}

fn ten_grants_refreshed_concurrently_make_ten_upstream_calls_without_cross_talk(b: &Broker) {
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authids: Vec<String> = (0..10).map(|_| b.login()).collect();
    b.mock.set_config(Config::default());
    b.mock.reset_stats();
    let results = concurrently(10, |i| b.refresh(&authids[i]));
    let tokens: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["access_token"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 10, "ten distinct tokens");
    let s = b.mock.stats();
    assert_eq!(s.refresh_calls, 10);
    assert_eq!(s.spent_refresh_reuse, 0);
    // Each authid keeps getting its own token.
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            b.refresh(&authids[i]).json()["access_token"],
            r.json()["access_token"]
        );
    }
}

fn assert_untouched(b: &Broker, authid: &str, before: &serde_json::Value) {
    let after = row(b, authid);
    assert_eq!(after["ciphertext"], before["ciphertext"], "grant unchanged");
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["status"], "active");
    assert_eq!(after["lease_until"], 0, "lease released");
}

fn provider_5xx_is_502_grant_untouched_and_recovers(b: &Broker) {
    let authid = expired_grant(b, Rotation::SingleUse);
    let before = row(b, &authid);
    for status in [500, 503] {
        b.mock.set_config(Config {
            fail_status: Some(status),
            ..Config::default()
        });
        let r = b.refresh(&authid);
        assert_eq!(r.status, 502, "{}", r.body);
        assert_eq!(r.json()["error"], "provider_error");
        assert!(r.header("X-Reason").is_some());
        assert!(!r.body.contains("server_error"), "no raw provider body");
        assert_untouched(b, &authid, &before);
    }
    b.mock.set_config(Config::default());
    assert_eq!(
        b.refresh(&authid).status,
        200,
        "works once the provider recovers"
    );
    assert_eq!(b.mock.stats().spent_refresh_reuse, 0);
}

fn malformed_provider_json_is_502_grant_untouched(b: &Broker) {
    let authid = expired_grant(b, Rotation::SingleUse);
    let before = row(b, &authid);
    b.mock.set_config(Config {
        malformed_json: true,
        ..Config::default()
    });
    let r = b.refresh(&authid);
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "provider_error");
    assert_untouched(b, &authid, &before);
}

fn invalid_grant_is_remembered_and_never_retried_upstream(b: &Broker) {
    let authid = expired_grant(b, Rotation::SingleUse);
    let before = row(b, &authid);
    b.mock.set_config(Config {
        invalid_grant: true,
        ..Config::default()
    });
    let r = b.refresh(&authid);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "reauthorization_required");
    assert!(r
        .header("X-Reason")
        .unwrap_or("")
        .contains("re-authorize this authid at"));
    assert_eq!(b.mock.stats().refresh_calls, 1);
    b.mock.set_config(Config::default());
    for _ in 0..3 {
        assert_eq!(b.refresh(&authid).status, 503);
    }
    assert_eq!(
        b.mock.stats().refresh_calls,
        1,
        "no hammering of the provider"
    );
    let after = row(b, &authid);
    assert_eq!(
        after["ciphertext"], before["ciphertext"],
        "sealed grant kept"
    );
    assert_eq!(after["status"], "reauth_required");
}

/// A 500, not a 503: Duplicati retries a 500 five times with backoff but fails
/// the backup at once on a 503 with `X-Reason` (duplicati/duplicati@66cfb242
/// `Duplicati/Library/Backend/OAuthHelper/OAuthHelperHttpClient.cs:166-181`).
fn d1_failure_is_a_retryable_500_storage_unavailable(b: &Broker) {
    let authid = b.login();
    b.d1("ALTER TABLE grants RENAME TO grants_moved");
    let r = b.refresh(&authid);
    b.d1("ALTER TABLE grants_moved RENAME TO grants");
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["error"], "storage_unavailable");
    assert_eq!(r.json()["status"], 500);
    assert_eq!(r.header("X-Error-Code"), Some("storage_unavailable"));
    assert!(r
        .header("X-Reason")
        .is_some_and(|x| x.contains("try again")));
    assert!(!r.body.contains("grants"), "no D1 message in the answer");
    assert_eq!(b.refresh(&authid).status, 200);
}

/// A lease left behind by a winner that died mid-refresh. Its expiry is set by
/// SQLite's clock when the UPDATE runs (`unixepoch() + secs`), not by ours before
/// `wrangler d1 execute` starts (which alone takes seconds), and read back with
/// RETURNING, so nothing below depends on how long the tool call took.
fn plant_crashed_lease(b: &Broker, kh: &str, secs: i64) -> i64 {
    b.d1(&format!(
        "UPDATE grants SET lease_until = unixepoch() + {secs}, lease_id = 'crashed' \
         WHERE key_hash = '{kh}' RETURNING lease_until"
    ))[0]["lease_until"]
        .as_i64()
        .expect("lease_until returned")
}

fn a_crashed_winners_lease_expires_and_the_grant_refreshes(b: &Broker) {
    let authid = expired_grant(b, Rotation::SingleUse);
    let kh = crate::core_flow::key_hash(&authid);
    // Well inside the worker's 20 s wait budget. If the tool call returned only
    // after the lease had already run out (a very loaded machine), the request
    // below would prove nothing about waiting: plant a longer one, once.
    let mut planted = None;
    for secs in [8, 16] {
        let until = plant_crashed_lease(b, &kh, secs);
        let sent = now();
        if sent < until {
            planted = Some(until);
            break;
        }
    }
    let until = planted.expect("planted a lease that was still held when the refresh was sent");
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(b.mock.stats().refresh_calls, 1, "one upstream refresh");
    // `updated_at` is the worker's clock when it persisted the refreshed grant:
    // it went upstream only once the crashed lease had expired.
    let after = b.d1(&format!(
        "SELECT updated_at, lease_until, lease_id FROM grants WHERE key_hash = '{kh}'"
    ))[0]
        .clone();
    let updated = after["updated_at"].as_i64().expect("updated_at");
    assert!(
        updated >= until,
        "refreshed at {updated}, before the crashed lease ran out at {until}"
    );
    assert_eq!(after["lease_until"], 0, "its own lease released");
    assert!(after["lease_id"].is_null());
}

fn a_lease_held_past_the_wait_budget_gives_a_retryable_504(b: &Broker) {
    let authid = expired_grant(b, Rotation::SingleUse);
    let kh = crate::core_flow::key_hash(&authid);
    // Far beyond the 20 s wait budget, counted from when the UPDATE runs.
    b.d1(&format!(
        "UPDATE grants SET lease_until = unixepoch() + 120, lease_id = 'stuck' WHERE key_hash = '{kh}'"
    ));
    let r = b.refresh(&authid);
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["error"], "refresh_pending");
    assert_eq!(
        b.mock.stats().refresh_calls,
        0,
        "never went upstream without the lease"
    );
    b.d1(&format!(
        "UPDATE grants SET lease_until = 0, lease_id = NULL WHERE key_hash = '{kh}'"
    ));
    assert_eq!(b.refresh(&authid).status, 200);
}

/// A grant whose access token is due for refresh, at a provider whose refresh
/// tokens are single use (Box, Jottacloud): presenting a spent one kills it.
fn expiring_single_use_grant(b: &Broker) -> String {
    b.mock.set_config(Config {
        access_token_ttl: 30,
        ..Config::default()
    });
    let authid = b.login();
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        ..Config::default()
    });
    b.mock.reset_stats();
    authid
}

/// The next refresh is served the token of the refresh that rotated, with no
/// second upstream call and no spent refresh token ever presented.
fn assert_grant_kept(b: &Broker, authid: &str) {
    let r = b.refresh(authid);
    assert_eq!(r.status, 200, "{}", r.body);
    let stats = b.mock.stats();
    assert_eq!(
        stats.spent_refresh_reuse, 0,
        "a spent refresh token went upstream"
    );
    assert_eq!(stats.refresh_calls, 1, "served from the persisted refresh");
    assert_eq!(
        r.json()["access_token"].as_str(),
        stats.issued_access_tokens.last().map(String::as_str),
        "the token the provider issued in that refresh"
    );
    b.remember(authid);
}

/// A refresh of `authid` (due, single-use provider) during which the provider
/// takes `delay_ms` and the client does what `client` does; then, once the
/// provider has answered, the grant must have been kept.
fn slow_refresh_keeps_the_grant(b: &Broker, authid: &str, delay_ms: u64, client: impl FnOnce()) {
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        delay_ms,
        ..Config::default()
    });
    let issued = b.mock.stats().issued_access_tokens.len();
    client();
    wait_for(
        "the provider to answer the refresh the client left",
        Duration::from_secs(60),
        || b.mock.stats().issued_access_tokens.len() > issued,
    );
    b.mock.set_config(Config {
        rotation: Rotation::SingleUse,
        ..Config::default()
    });
    assert_grant_kept(b, authid);
}

fn a_client_that_hangs_up_mid_refresh_loses_no_grant(b: &Broker) {
    let authid = expiring_single_use_grant(b);
    // The provider takes 2.5 s (inside the worker's 3 s upstream timeout); the
    // client hangs up after 1 s, while the refresh is in flight.
    slow_refresh_keeps_the_grant(b, &authid, 2_500, || {
        let hung_up = get_and_hang_up(
            &b.url("/refresh"),
            &[("X-AuthID", &authid)],
            Duration::from_secs(1),
        );
        assert!(hung_up, "the client left before the answer");
    });
}

fn a_provider_answering_after_the_client_gave_up_still_has_its_rotated_token_kept(b: &Broker) {
    let authid = expiring_single_use_grant(b);
    // The worker under test lets a client wait 3 s for the provider
    // (UPSTREAM_TIMEOUT_MS) but waits itself up to 25 s for the real answer.
    slow_refresh_keeps_the_grant(b, &authid, 6_000, || {
        let r = b.refresh(&authid);
        assert_eq!(r.status, 504, "{}", r.body);
        assert_eq!(r.json()["error"], "provider_timeout");
    });
}

fn a_late_waiter_answers_retryably_within_the_clients_25_s_and_leaves_the_lease_free(b: &Broker) {
    // Production timings: a client waits up to 15 s for the provider, so a
    // refresh may start only in the first 25 - 15 - 1.5 - 2 = 6.5 s of a request.
    let worker = Broker::start_with(
        &b.mock,
        Options {
            extra_vars: vec![("UPSTREAM_TIMEOUT_MS".into(), "15000".into())],
            ..Options::default()
        },
    );
    let authid = expiring_single_use_grant(&worker);
    let kh = crate::core_flow::key_hash(&authid);
    // A crashed winner's lease that runs out 8+ s into the request: past the
    // window in which this waiter could still be answered after going upstream.
    // Its expiry is SQLite's clock when the UPDATE runs; replant if the tool
    // call itself ate into it.
    let mut sent = None;
    for _ in 0..3 {
        let until = worker.d1(&format!(
            "UPDATE grants SET lease_until = unixepoch() + 14, lease_id = 'crashed' \
             WHERE key_hash = '{kh}' RETURNING lease_until"
        ))[0]["lease_until"]
            .as_i64()
            .expect("lease_until");
        if until - now() >= 8 {
            sent = Some(until);
            break;
        }
    }
    assert!(sent.is_some(), "could not plant a lease 8 s ahead");
    let t = Instant::now();
    let r = worker.refresh(&authid);
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.json()["error"], "refresh_pending");
    assert!(
        took < Duration::from_secs(25),
        "answered after {took:?}, past the client's 25 s"
    );
    assert_eq!(
        worker.mock.stats().refresh_calls,
        0,
        "no refresh started that the client could not have waited for"
    );
    let row = &worker.d1(&format!(
        "SELECT lease_id FROM grants WHERE key_hash = '{kh}'"
    ))[0];
    assert_eq!(
        row["lease_id"], "crashed",
        "the lease was left free (expired, unclaimed)"
    );
    // The client's retry refreshes at once.
    let r = worker.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(worker.mock.stats().refresh_calls, 1);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
