//! Issue 15: counted D1 work. With `SERVER_TIMING=1` every answer reports its
//! D1 statements (`d1;desc="r=<replica reads> p=<primary statements> w=<writes>"`,
//! `oauth_broker::d1work`), and the counts prove where the refresh protocol
//! goes: a cache hit is one replica read and nothing else; a cache miss reads
//! the replica, then claims the lease on the primary with the version it read
//! and writes the refreshed grant there. (`wrangler dev` has no replicas: both
//! sessions reach the one local database, so this proves the routing and the
//! counts; `crate::refresh`'s unit tests and the simulator, `tests/sim/`, prove
//! the decisions against a lagging replica.)

use oauth_broker::authid::AuthId;
use oauth_broker::d1work;
use oauth_broker::ids::Shard;

use crate::harness::{Broker, Options, Resp};
use crate::Test;

pub const TESTS: &[Test] = &[
    (
        "d1_work_of_a_cache_hit_and_a_cache_miss_is_reported_in_server_timing",
        d1_work_of_a_cache_hit_and_a_cache_miss_is_reported_in_server_timing,
    ),
    (
        "server_timing_is_off_unless_the_operator_turns_it_on",
        server_timing_is_off_unless_the_operator_turns_it_on,
    ),
];

/// The D1 work an answer reports in `Server-Timing` (replica, primary, writes).
pub(crate) fn d1_work(r: &Resp) -> (u32, u32, u32) {
    let h = r
        .header("Server-Timing")
        .unwrap_or_else(|| panic!("no Server-Timing header (status {})", r.status));
    d1work::parse(h).unwrap_or_else(|| panic!("unreadable Server-Timing: {h}"))
}

fn d1_work_of_a_cache_hit_and_a_cache_miss_is_reported_in_server_timing(b: &Broker) {
    let w = Broker::start_with(
        &b.mock,
        Options {
            extra_vars: vec![("SERVER_TIMING".into(), "1".into())],
            ..Options::default()
        },
    );
    assert_eq!(
        d1_work(&w.get("/healthz")),
        (0, 0, 0),
        "/healthz touches no D1"
    );
    let authid = w.login();
    let calls = b.mock.stats().refresh_calls;

    // Cache hit: the token from the login has an hour left.
    let hit = w.refresh(&authid);
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(
        d1_work(&hit),
        (1, 0, 0),
        "a cache hit is one replica read, nothing on the primary, no write"
    );
    assert_eq!(b.mock.stats().refresh_calls, calls, "no upstream call");

    // Cache miss: replica read, then on the primary only the lease claim (with
    // the version the replica read) and the compare-and-swap write.
    w.expire_access_token(&authid);
    let miss = w.refresh(&authid);
    assert_eq!(miss.status, 200, "{}", miss.body);
    assert_eq!(
        d1_work(&miss),
        (1, 2, 2),
        "a miss: 1 replica read; on the primary the claim + the write, no read"
    );
    assert_eq!(b.mock.stats().refresh_calls, calls + 1, "one upstream call");

    // And the refreshed token is a hit again.
    assert_eq!(d1_work(&w.refresh(&authid)), (1, 0, 0));
    // An unknown authid is asked of the primary before it is called unknown.
    let stranger = AuthId::generate(Shard::FIRST).expect("CSPRNG").expose();
    let unknown = w.refresh(&stranger);
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    assert_eq!(d1_work(&unknown), (1, 1, 0));
}

fn server_timing_is_off_unless_the_operator_turns_it_on(b: &Broker) {
    let authid = b.login();
    let r = b.refresh(&authid);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Server-Timing"), None);
    assert_eq!(b.get("/healthz").header("Server-Timing"), None);
}
