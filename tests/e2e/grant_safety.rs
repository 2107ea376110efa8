//! A grant survives what clients, providers and the platform do mid-refresh:
//! a client that hangs up, a provider that answers after the client gave up,
//! a waiter that would claim the lease too late to be answered in time.

use std::time::{Duration, Instant};

use mock_provider::{Config, Rotation};

use crate::harness::{get_and_hang_up, wait_for, Broker, Options};

pub const TESTS: &[crate::Test] = tests![
    a_client_that_hangs_up_mid_refresh_loses_no_grant,
    a_provider_answering_after_the_client_gave_up_still_has_its_rotated_token_kept,
    a_late_waiter_answers_retryably_within_the_clients_25_s_and_leaves_the_lease_free,
];

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
