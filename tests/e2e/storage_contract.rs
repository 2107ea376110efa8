//! The storage contract (`oauth_broker::storage`) holds on D1: the
//! fault-injection build's `POST /__conformance` runs the conformance checks
//! (`src/storage/conformance.rs`, the same ones the in-memory store passes in
//! `cargo test --lib`) against the worker's own local D1, through the very
//! statements the handlers send (`src/shell/store/`), and answers each
//! check's result. The release build has no such route.

use oauth_broker::storage::CHECKS;

use crate::harness::{request, Broker, Options};

pub const TESTS: &[crate::Test] = tests![
    storage_contract_every_conformance_check_passes_on_d1,
    storage_contract_the_release_build_has_no_conformance_route,
];

fn storage_contract_every_conformance_check_passes_on_d1(b: &Broker) {
    // Its own fault-injection worker (and so its own local D1), stopped at
    // the end of the test.
    let faulty = Broker::start_with(
        &b.mock,
        Options {
            fault_build: true,
            ..Options::default()
        },
    );
    let r = request("POST", &faulty.url("/__conformance"), &[], None);
    assert_eq!(r.status, 200, "the conformance hook answers: {}", r.body);
    let json = r.json();
    let checks = json["checks"].as_array().cloned().unwrap_or_default();
    let mut failed = Vec::new();
    for c in &checks {
        let (name, passed) = (c["name"].as_str().unwrap_or("?"), c["passed"] == true);
        println!(
            "    {} {name}{}",
            if passed { "pass" } else { "FAIL" },
            c["detail"]
                .as_str()
                .filter(|d| !d.is_empty())
                .map_or(String::new(), |d| format!(": {d}"))
        );
        if !passed {
            failed.push(name.to_string());
        }
    }
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        names,
        CHECKS,
        "D1 runs every check the in-memory store runs ({} natively), in order",
        CHECKS.len()
    );
    assert!(
        failed.is_empty(),
        "D1 fails the storage contract: {failed:?}"
    );
}

fn storage_contract_the_release_build_has_no_conformance_route(b: &Broker) {
    let r = request("POST", &b.url("/__conformance"), &[], None);
    assert_eq!(
        r.status, 404,
        "the release worker has no conformance route: {}",
        r.body
    );
}
