//! Load benchmark: N concurrent clients drive `/refresh` (cache-hit path, one
//! authid per client) against the worker in workerd, side by side with the no-op
//! `/healthz` route on the same worker in the same run. Loopback only; bounded
//! by time and by a request cap per phase.
//!
//!   cargo run --release --example load -- [--seconds S] [--connections N]
//!
//! (bench/load.sh builds the worker first and runs this.)

#[path = "../tests/e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::time::{Duration, Instant};

const MAX_REQUESTS_PER_PHASE: usize = 2_000_000;

struct Phase {
    name: &'static str,
    requests: usize,
    errors_5xx: usize,
    errors_other: usize,
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

impl Phase {
    fn report(&self) -> (f64, f64, f64) {
        let mut l = self.latencies_us.clone();
        l.sort_unstable();
        let pct = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1000.0
            }
        };
        let rps = self.requests as f64 / self.elapsed.as_secs_f64();
        println!(
            "{:<10} {:>8} req {:>9.1} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  5xx {}  other errors {}",
            self.name,
            self.requests,
            rps,
            pct(0.50),
            pct(0.99),
            self.errors_5xx,
            self.errors_other
        );
        (rps, pct(0.50), pct(0.99))
    }
}

fn run_phase(
    name: &'static str,
    base: &str,
    path: &str,
    authids: &[String],
    seconds: u64,
) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let per_client = MAX_REQUESTS_PER_PHASE / authids.len().max(1);
    let results: Vec<(usize, usize, usize, Vec<u64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = authids
            .iter()
            .map(|authid| {
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(30))
                        .build();
                    let url = format!("{base}{path}");
                    let (mut n, mut e5, mut eo, mut lat) = (0, 0, 0, Vec::new());
                    while Instant::now() < deadline && n < per_client {
                        let t = Instant::now();
                        let r = agent.get(&url).set("X-AuthID", authid).call();
                        lat.push(t.elapsed().as_micros() as u64);
                        n += 1;
                        match r {
                            Ok(resp) => {
                                let _ = resp.into_string();
                            }
                            Err(ureq::Error::Status(code, _)) if code >= 500 => e5 += 1,
                            Err(_) => eo += 1,
                        }
                    }
                    (n, e5, eo, lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = started.elapsed();
    let mut p = Phase {
        name,
        requests: 0,
        errors_5xx: 0,
        errors_other: 0,
        latencies_us: Vec::new(),
        elapsed,
    };
    for (n, e5, eo, lat) in results {
        p.requests += n;
        p.errors_5xx += e5;
        p.errors_other += eo;
        p.latencies_us.extend(lat);
    }
    p
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg("--seconds", 30).clamp(1, 600);
    let connections = arg("--connections", 64).clamp(1, 512) as usize;
    let broker = harness::Broker::start();
    println!(
        "worker at {} — {connections} connections, {seconds} s per phase",
        broker.base
    );
    // One authid per client, each logged in through the real flow.
    let authids: Vec<String> = (0..connections).map(|_| broker.login()).collect();
    // Warm the cache so the refresh phase measures the cache-hit path.
    for a in &authids {
        assert_eq!(broker.refresh(a).status, 200, "warm-up refresh");
    }
    broker.mock.reset_stats();
    let baseline = run_phase("healthz", &broker.base, "/healthz", &authids, seconds);
    let refresh = run_phase("refresh", &broker.base, "/refresh", &authids, seconds);
    println!();
    let (b_rps, b50, b99) = baseline.report();
    let (r_rps, r50, r99) = refresh.report();
    println!(
        "refresh/healthz: throughput x{:.2}, p50 x{:.2}, p99 x{:.2}; upstream refresh calls during the run: {}",
        r_rps / b_rps,
        r50 / b50.max(0.001),
        r99 / b99.max(0.001),
        broker.mock.stats().refresh_calls
    );
    if refresh.errors_5xx > 0 || baseline.errors_5xx > 0 {
        eprintln!("FAIL: 5xx answers on the cache-hit path");
        std::process::exit(1);
    }
}
