//! End-to-end suite: the built worker running in workerd (`wrangler dev`) with a
//! throw-away local D1, against the mock OAuth2 provider on 127.0.0.1.
//!
//! One worker serves every test (starting workerd takes seconds); tests run in
//! order and each makes its own grants. `cargo test --test e2e -- <filter>` runs
//! the tests whose name contains a filter word.
#![cfg(not(target_arch = "wasm32"))]

mod abuse;
mod akeeba;
mod browser;
mod concurrency;
mod core_flow;
mod device;
mod doors;
mod duplicati;
mod gate;
mod grant_life;
mod grant_safety;
mod hardening;
mod harness;
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
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // Leak checks run last: they inspect everything the other tests left behind.
    let all: Vec<Test> = [
        skeleton::TESTS,
        core_flow::TESTS,
        concurrency::TESTS,
        grant_safety::TESTS,
        duplicati::TESTS,
        hardening::TESTS,
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
