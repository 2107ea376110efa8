//! Load benchmark, one invocation, one worker in workerd (loopback only,
//! bounded by time and by a request cap per phase):
//!
//! - `healthz`: the no-op route, the baseline every ratio is against;
//! - `hit`:  `/refresh` on the cache-hit path (one authid per client);
//! - `floor`: `/token-state` for an unknown token: one D1 SELECT behind the
//!   per-IP limit, the least a hit (which keeps its D1 read) can cost;
//! - `miss`: `/refresh` where every call refreshes upstream (the mock issues
//!   60 s tokens, already at the 60 s floor, and answers at once);
//! - `storm`: the "midnight storm": K grants expiring together, C clients each
//!   at once → exactly K upstream calls and 2K writes, 0 errors, p99;
//! - "1 shard vs N shards": the `miss` and `storm` phases again on a second
//!   worker with N local D1 grant shards (`D1_SHARDS`, default N = 3; the
//!   grants spread over them), beside the 1-shard figures, with the ratio.
//!
//! Each phase reports req/s, p50/p99, its ratio to `/healthz`, and the D1 work
//! per request read from the worker's `Server-Timing` header (`SERVER_TIMING=1`:
//! r = replica reads, p = primary statements, w = writes that changed rows).
//!
//!   cargo run --release --example load -- [--seconds S] [--connections N]
//!       [--storm-grants K] [--storm-clients C] [--shards N]
//!
//! (bench/load.sh builds the worker first and runs this.)

#[path = "../tests/e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use oauth_broker::d1work;

const MAX_REQUESTS_PER_PHASE: usize = 2_000_000;

/// One D1 SELECT and nothing a hit does not also do: `/token-state` with a
/// well-formed token nobody registered.
const FLOOR_PATH: &str = "/token-state?token=benchfloor0123456789abcdefghij";

#[derive(Default)]
struct Phase {
    name: String,
    requests: usize,
    errors_5xx: usize,
    errors_other: usize,
    latencies_us: Vec<u64>,
    elapsed: Duration,
    /// Summed Server-Timing counts (replica, primary, writes) and how many answers carried one.
    d1: (u64, u64, u64),
    counted: usize,
    /// Failed answers by "<status> <X-Error-Code>" ("no answer" for transport errors).
    failures: std::collections::BTreeMap<String, usize>,
}

struct Outcome {
    latency_us: u64,
    status: Option<u16>,
    d1: Option<(u32, u32, u32)>,
    /// `X-Error-Code` of a failed answer.
    code: Option<String>,
}

fn one(agent: &ureq::Agent, url: &str, authid: &str) -> Outcome {
    let t = Instant::now();
    let r = agent.get(url).set("X-AuthID", authid).call();
    let latency_us = t.elapsed().as_micros() as u64;
    let timing = |resp: &ureq::Response| resp.header("Server-Timing").and_then(d1work::parse);
    match r {
        Ok(resp) => {
            let d1 = timing(&resp);
            let status = resp.status();
            let _ = resp.into_string();
            Outcome {
                latency_us,
                status: Some(status),
                d1,
                code: None,
            }
        }
        Err(ureq::Error::Status(code, resp)) => Outcome {
            latency_us,
            status: Some(code),
            d1: timing(&resp),
            code: resp.header("X-Error-Code").map(str::to_string),
        },
        Err(_) => Outcome {
            latency_us,
            status: None,
            d1: None,
            code: None,
        },
    }
}

impl Phase {
    fn add(&mut self, o: Outcome) {
        self.requests += 1;
        self.latencies_us.push(o.latency_us);
        match o.status {
            Some(200) => {}
            Some(s) if s >= 500 => self.errors_5xx += 1,
            _ => self.errors_other += 1,
        }
        if o.status != Some(200) {
            let key = match o.status {
                Some(s) => format!("{s} {}", o.code.as_deref().unwrap_or("-")),
                None => "no answer".to_string(),
            };
            *self.failures.entry(key).or_default() += 1;
        }
        if let Some((r, p, w)) = o.d1 {
            self.d1.0 += u64::from(r);
            self.d1.1 += u64::from(p);
            self.d1.2 += u64::from(w);
            self.counted += 1;
        }
    }

    /// The phase `name` made of every client's part, timed from `started`.
    fn gathered(name: &str, parts: Vec<Phase>, started: Instant) -> Phase {
        let mut phase = Phase {
            name: name.to_string(),
            ..Phase::default()
        };
        for p in parts {
            phase.merge(p);
        }
        phase.elapsed = started.elapsed();
        phase
    }

    fn merge(&mut self, other: Phase) {
        self.requests += other.requests;
        self.errors_5xx += other.errors_5xx;
        self.errors_other += other.errors_other;
        self.latencies_us.extend(other.latencies_us);
        self.d1.0 += other.d1.0;
        self.d1.1 += other.d1.1;
        self.d1.2 += other.d1.2;
        self.counted += other.counted;
        for (k, n) in other.failures {
            *self.failures.entry(k).or_default() += n;
        }
    }

    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        if l.is_empty() {
            return 0.0;
        }
        l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1000.0
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn d1_per_request(&self) -> String {
        let n = self.counted.max(1) as f64;
        format!(
            "r={:.2} p={:.2} w={:.2}",
            self.d1.0 as f64 / n,
            self.d1.1 as f64 / n,
            self.d1.2 as f64 / n
        )
    }

    fn report(&self, baseline_rps: f64) {
        println!(
            "{:<10} {:>7} req {:>8.1} req/s  x{:<5.2} p50 {:>7.2} ms  p99 {:>7.2} ms  5xx {}  other {}  d1/req {}",
            self.name,
            self.requests,
            self.rps(),
            self.rps() / baseline_rps.max(1e-9),
            self.pct(0.50),
            self.pct(0.99),
            self.errors_5xx,
            self.errors_other,
            self.d1_per_request(),
        );
        if !self.failures.is_empty() {
            let list: Vec<String> = self
                .failures
                .iter()
                .map(|(k, n)| format!("{n} x {k}"))
                .collect();
            println!("{:<10} failures: {}", "", list.join(", "));
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// Every client hits `path` with its own authid until `seconds` have passed.
fn run_phase(name: &str, base: &str, path: &str, authids: &[String], seconds: u64) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let per_client = MAX_REQUESTS_PER_PHASE / authids.len().max(1);
    let url = format!("{base}{path}");
    let parts: Vec<Phase> = std::thread::scope(|s| {
        let handles: Vec<_> = authids
            .iter()
            .map(|authid| {
                let url = &url;
                s.spawn(move || {
                    let agent = agent();
                    let mut p = Phase::default();
                    while Instant::now() < deadline && p.requests < per_client {
                        p.add(one(&agent, url, authid));
                    }
                    p
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    Phase::gathered(name, parts, started)
}

/// K grants all under the floor, C clients each, released together: one
/// request per client.
fn storm(name: &str, base: &str, grants: &[String], clients: usize) -> Phase {
    let url = format!("{base}/refresh");
    let barrier = Arc::new(Barrier::new(grants.len() * clients));
    let started = Instant::now();
    let parts: Vec<Phase> = std::thread::scope(|s| {
        let handles: Vec<_> = grants
            .iter()
            .flat_map(|a| std::iter::repeat_n(a, clients))
            .map(|authid| {
                let (url, barrier) = (&url, Arc::clone(&barrier));
                s.spawn(move || {
                    let agent = agent();
                    let mut p = Phase::default();
                    barrier.wait();
                    p.add(one(&agent, url, authid));
                    p
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    Phase::gathered(name, parts, started)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn set_ttl(broker: &harness::Broker, secs: u64) {
    let mut cfg = broker.mock.config();
    cfg.access_token_ttl = secs;
    broker.mock.set_config(cfg);
}

/// The cache-miss phase and the midnight storm on `broker` (labels end in
/// `suffix`).
struct MissAndStorm {
    miss: Phase,
    miss_calls: u64,
    storm: Phase,
    storm_calls: u64,
    storm_reuse: u64,
    /// The storm's grants per shard (by the authids' tags).
    storm_spread: Vec<usize>,
}

impl MissAndStorm {
    fn storm_errors(&self) -> usize {
        self.storm.errors_5xx + self.storm.errors_other
    }

    fn storm_line(&self, label: &str, grants: usize, clients: usize) {
        println!(
            "{label}: {} grants x {} clients = {} requests; upstream calls {} (want {}), writes {} (want {}), errors {}, spent-token reuse {}, p99 {:.2} ms",
            grants,
            clients,
            self.storm.requests,
            self.storm_calls,
            grants,
            self.storm.d1.2,
            2 * grants,
            self.storm_errors(),
            self.storm_reuse,
            self.storm.pct(0.99)
        );
    }

    fn single_flight(&self, grants: usize) -> bool {
        self.storm_calls == grants as u64
            && self.storm.d1.2 == 2 * grants as u64
            && self.storm_errors() == 0
            && self.storm_reuse == 0
    }
}

fn miss_and_storm(
    broker: &harness::Broker,
    suffix: &str,
    connections: usize,
    seconds: u64,
    storm_grants: usize,
    storm_clients: usize,
) -> MissAndStorm {
    let mock = &broker.mock;
    // Misses: fresh grants whose tokens (and every token the mock issues from
    // now on) are at the 60 s floor already, so every refresh goes upstream.
    set_ttl(broker, 60);
    let missing: Vec<String> = (0..connections).map(|_| broker.login()).collect();
    let calls = mock.stats().refresh_calls;
    let miss = run_phase(
        &format!("miss{suffix}"),
        &broker.base,
        "/refresh",
        &missing,
        seconds,
    );
    let miss_calls = mock.stats().refresh_calls - calls;

    // The storm: K fresh grants, all under the floor at once; the provider
    // issues hour-long tokens again, so each needs exactly one refresh.
    let grants: Vec<String> = (0..storm_grants).map(|_| broker.login()).collect();
    set_ttl(broker, 3600);
    let before = mock.stats();
    let storm = storm(
        &format!("storm{suffix}"),
        &broker.base,
        &grants,
        storm_clients,
    );
    let after = mock.stats();
    let mut storm_spread = vec![0; broker.shards];
    for g in &grants {
        if let Some(n) = storm_spread.get_mut(harness::shard_of(g).0 - 1) {
            *n += 1;
        }
    }
    MissAndStorm {
        miss,
        miss_calls,
        storm,
        storm_calls: after.refresh_calls - before.refresh_calls,
        storm_reuse: after.spent_refresh_reuse - before.spent_refresh_reuse,
        storm_spread,
    }
}

fn start(mock: &Arc<mock_provider::MockProvider>, shards: usize) -> harness::Broker {
    harness::Broker::start_with(
        mock,
        harness::Options {
            // The production default (15 s) instead of the e2e suite's 3 s: on
            // a loaded machine a storm's winners can take over 3 s, and a
            // client that gave up (504 `provider_timeout`, the refresh still
            // stored in the background) is not what the storm measures.
            // (A later line in the env file wins, as in grant_safety.rs.)
            extra_vars: vec![
                ("SERVER_TIMING".into(), "1".into()),
                ("UPSTREAM_TIMEOUT_MS".into(), "15000".into()),
            ],
            d1_shards: shards,
            ..harness::Options::default()
        },
    )
}

fn main() {
    let seconds = arg("--seconds", 10).clamp(1, 600);
    let connections = arg("--connections", 16).clamp(1, 512) as usize;
    let storm_grants = arg("--storm-grants", 20).clamp(1, 1000) as usize;
    let storm_clients = arg("--storm-clients", 8).clamp(1, 100) as usize;
    let shards = arg("--shards", 3).clamp(1, 16) as usize;
    let mock = Arc::new(
        mock_provider::MockProvider::start(
            "127.0.0.1:0",
            harness::CLIENT_ID,
            harness::CLIENT_SECRET,
        )
        .expect("mock provider"),
    );
    let broker = start(&mock, 1);
    println!(
        "worker at {} — {connections} connections, {seconds} s per phase; storm: {storm_grants} grants x {storm_clients} clients; then 1 shard vs {shards}",
        broker.base
    );
    // One authid per client, each logged in through the real flow.
    let authids: Vec<String> = (0..connections).map(|_| broker.login()).collect();
    for a in &authids {
        assert_eq!(broker.refresh(a).status, 200, "warm-up refresh");
    }
    let healthz = run_phase("healthz", &broker.base, "/healthz", &authids, seconds);
    let hit = run_phase("hit", &broker.base, "/refresh", &authids, seconds);
    // The local floor of a hit: an existing route that does one D1 SELECT
    // (no row) behind the per-IP limit and answers a small JSON (docs/scale.md).
    let floor = run_phase("floor", &broker.base, FLOOR_PATH, &authids, seconds);
    let one = miss_and_storm(
        &broker,
        "",
        connections,
        seconds,
        storm_grants,
        storm_clients,
    );
    drop(broker);

    // The same miss and storm phases on a worker with `shards` D1 databases
    // (one workerd, one SQLite file per shard locally).
    let many = (shards > 1).then(|| {
        let sharded = start(&mock, shards);
        let m = miss_and_storm(
            &sharded,
            &format!("@{shards}"),
            connections,
            seconds,
            storm_grants,
            storm_clients,
        );
        let rows: Vec<u64> = (1..=shards)
            .map(|k| {
                sharded.d1_on(k, "SELECT COUNT(*) AS n FROM grants")[0]["n"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect();
        (m, rows)
    });

    println!();
    let base_rps = healthz.rps();
    for p in [&healthz, &floor, &hit, &one.miss] {
        p.report(base_rps);
    }
    one.storm.report(base_rps);
    println!(
        "hit/healthz x{:.2} (floor x{:.2}); miss/healthz x{:.2}; miss upstream calls {} for {} requests",
        hit.rps() / base_rps,
        floor.rps() / base_rps,
        one.miss.rps() / base_rps,
        one.miss_calls,
        one.miss.requests
    );
    one.storm_line("storm", storm_grants, storm_clients);
    let mut failed = Vec::new();
    if healthz.errors_5xx + floor.errors_5xx + hit.errors_5xx + one.miss.errors_5xx > 0 {
        failed.push("5xx answers".to_string());
    }
    if !one.single_flight(storm_grants) {
        failed.push("the storm was not single-flight".to_string());
    }
    if let Some((m, rows)) = &many {
        println!();
        println!("1 shard vs {shards} shards (ratio = {shards} shards / 1 shard; x = vs /healthz of the 1-shard worker):");
        for (a, b) in [(&one.miss, &m.miss), (&one.storm, &m.storm)] {
            a.report(base_rps);
            b.report(base_rps);
            println!(
                "{:<10} req/s x{:.2}  p50 x{:.2}  p99 x{:.2}",
                format!("{}/{}", b.name, a.name),
                b.rps() / a.rps().max(1e-9),
                b.pct(0.50) / a.pct(0.50).max(1e-9),
                b.pct(0.99) / a.pct(0.99).max(1e-9),
            );
        }
        println!(
            "miss@{shards} upstream calls {} for {} requests; storm grants per shard {:?}; grant rows per shard {:?}",
            m.miss_calls, m.miss.requests, m.storm_spread, rows
        );
        m.storm_line(&format!("storm@{shards}"), storm_grants, storm_clients);
        if m.miss.errors_5xx > 0 {
            failed.push(format!("5xx answers with {shards} shards"));
        }
        if !m.single_flight(storm_grants) {
            failed.push(format!(
                "the storm on {shards} shards was not single-flight"
            ));
        }
        if rows.iter().filter(|n| **n > 0).count() < shards.min(connections + storm_grants) {
            failed.push(format!("grants did not reach every one of {shards} shards"));
        }
    }
    if !failed.is_empty() {
        eprintln!("FAIL: {}", failed.join(", "));
        std::process::exit(1);
    }
}
