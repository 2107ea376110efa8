//! End-to-end suite: the built worker running in workerd (`wrangler dev`) with a
//! throw-away local D1, against the mock OAuth2 provider on 127.0.0.1.
//!
//! One worker serves every test (starting workerd takes seconds); tests run in
//! order and each makes its own grants. `cargo test --test e2e -- <filter>` runs
//! the tests whose name contains a filter word; `-- --list` names them without
//! running any. A file registers its tests with `tests![…]`, each name once.
//!
//! Where a test lives, by what it is about:
//!
//! | about | file |
//! | --- | --- |
//! | **clients, as each one meets the broker** | |
//! | Duplicati: command line, old and new UI, hand-offs | `duplicati.rs` |
//! | Duplicati in headless Chromium (popup, "Send to Duplicati") | `browser.rs` |
//! | Akeeba Backup's helper door and its connectors | `akeeba.rs` |
//! | rclone refreshing with an authid / logging in by itself | `rclone.rs`, `rclone_login.rs` |
//! | Jottacloud's CLI-token login | `jottacloud.rs` |
//! | moving in from Duplicati's own OAuth services | `moving.rs` |
//! | the pages a person reads, at desktop and phone widths | `pages.rs` |
//! | a grant's status page and re-authorization | `grant_life.rs` |
//! | the operator: a misconfigured provider app | `operator.rs` |
//! | **protocol** | |
//! | routes answer at all (the walking skeleton) | `skeleton.rs` |
//! | login, sealed grants, refresh, revoke, malformed requests | `core_flow.rs` |
//! | the route table: methods, HTML or JSON errors, gated, limited | `routes.rs` |
//! | OAuth token and revocation endpoints (RFC 6749, 7009) | `oauth_token.rs` |
//! | OAuth authorization endpoint for native apps (RFC 8252) | `oauth_code.rs` |
//! | device authorization grant (RFC 8628) | `device.rs` |
//! | D1 shards; counted D1 work | `shards.rs`, `scale.rs` |
//! | expired rows purged by the Cron Trigger | `purge.rs` |
//! | **safety** | |
//! | never lose a grant at `/refresh`: single flight, faults mid-refresh | `grant_safety.rs` |
//! | the OAuth doors keep the promise (redemptions, replays, consent) | `promise.rs` |
//! | every door under every fault, as one table (fault-injection build) | `doors.rs` |
//! | the storage contract's conformance checks against D1 (fault-injection build) | `storage_contract.rs` |
//! | the operator access gate, everywhere it applies | `gate.rs` |
//! | rate limits, body caps and other abuse that costs the operator | `abuse.rs` |
//! | the hostile-request table (stable 4xx, nothing echoed) | `hostile.rs` |
//! | secret rotation, security headers | `hardening.rs` |
//! | nothing secret in D1 files or logs (runs last) | `leaks.rs` |
//!
//! The harness (`harness.rs` and `harness/`): `worker` starts the worker and the
//! mock, `http` is the client, `d1` reads the local D1, `cookies` is a browser's
//! jar, and `flows` holds the steps tests share (log in, discover the front
//! door, a login through the mock, one rate-limit window).
#![cfg(not(target_arch = "wasm32"))]

/// A file's tests in the order they run, each name written once:
/// `tests![a, b]` registers the functions `a` and `b` under their own names,
/// and `name => |b| …` registers a closure (or another function) as `name`.
macro_rules! tests {
    ($($name:ident $(=> $run:expr)?),* $(,)?) => {
        &[$((stringify!($name), tests!(@run $name $(, $run)?))),*]
    };
    (@run $name:ident) => { $name };
    (@run $name:ident, $run:expr) => { $run };
}

mod abuse;
mod akeeba;
mod browser;
mod core_flow;
mod device;
mod doors;
mod duplicati;
mod gate;
mod grant_life;
mod grant_safety;
mod hardening;
mod harness;
mod hostile;
mod jottacloud;
mod leaks;
mod moving;
mod oauth_code;
mod oauth_token;
mod operator;
mod pages;
mod promise;
mod purge;
mod rclone;
mod rclone_login;
mod routes;
mod scale;
mod shards;
mod skeleton;
mod storage_contract;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

pub type Test = (&'static str, fn(&harness::Broker));

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = args.iter().any(|a| a == "--list");
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with('-')).collect();
    // Leak checks run last: they inspect everything the other tests left behind.
    let all: Vec<Test> = [
        skeleton::TESTS,
        core_flow::TESTS,
        grant_safety::TESTS,
        duplicati::TESTS,
        hardening::TESTS,
        hostile::TESTS,
        abuse::TESTS,
        browser::TESTS,
        pages::TESTS,
        routes::TESTS,
        jottacloud::TESTS,
        gate::TESTS,
        moving::TESTS,
        oauth_token::TESTS,
        rclone::TESTS,
        akeeba::TESTS,
        oauth_code::TESTS,
        device::TESTS,
        promise::TESTS,
        doors::TESTS,
        rclone_login::TESTS,
        scale::TESTS,
        shards::TESTS,
        purge::TESTS,
        operator::TESTS,
        grant_life::TESTS,
        storage_contract::TESTS,
        leaks::TESTS,
    ]
    .concat();
    let selected: Vec<Test> = all
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if list {
        // `--list` names the selected tests in libtest's format and runs none.
        for (name, _) in &selected {
            println!("{name}: test");
        }
        println!("\n{} tests", selected.len());
        return;
    }
    println!("running {} e2e tests", selected.len());
    if selected.is_empty() {
        println!("0 passed, 0 failed");
        return;
    }
    let started = Instant::now();
    // rclone's fixed port, before any worker binds ports the system picks.
    rclone_login::hold_rclone_port();
    let broker = harness::Broker::start();
    println!(
        "worker up at {} in {:.1} s",
        broker.base,
        started.elapsed().as_secs_f64()
    );
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, test) in selected {
        broker.reset_mock();
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| test(&broker))) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    gate::stop();
    doors::stop();
    drop(broker);
    if !failed.is_empty() {
        println!("\nfailures:");
        for f in &failed {
            println!("    {f}");
        }
    }
    println!("\ne2e took {:.1} s", started.elapsed().as_secs_f64());
    println!("e2e: {} passed, {} failed", passed, failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
