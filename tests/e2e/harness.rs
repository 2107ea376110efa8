//! The e2e harness: starts the mock provider (in process) and the built worker in
//! workerd (`wrangler dev`, own process group, throw-away local D1), and talks to
//! both over HTTP on 127.0.0.1. Everything it starts is stopped on drop, and a
//! watchdog stops the worker if this process dies without dropping.
//!
//! By concern: [`worker`] starts and stops the worker and the mock; [`http`] is
//! the client (plain requests, raw bytes on a socket, the broker's own shortcuts);
//! [`d1`] reads and writes the local D1 through `wrangler d1 execute`; [`cookies`]
//! is one browser's cookie jar; [`flows`] holds the sequences tests share (log in
//! and get an authid, the mock's consent, a Duplicati fetch token, one
//! rate-limit window).
//!
//! The children are named by `#[path]` (relative to this file) because the
//! benchmarks (`bench/load.rs`, `bench/soak.rs`) load this file by path too.

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};

use mock_provider::MockProvider;

#[path = "harness/cookies.rs"]
mod cookies;
#[path = "harness/d1.rs"]
mod d1;
#[path = "harness/flows.rs"]
mod flows;
#[path = "harness/http.rs"]
mod http;
#[path = "harness/worker.rs"]
mod worker;

pub use cookies::*;
pub use d1::*;
// The benchmarks use only its methods.
#[allow(unused_imports)]
pub use flows::*;
pub use http::*;
pub use worker::*;

pub const CLIENT_ID: &str = "demo-client";
pub const CLIENT_SECRET: &str = "e2e-client-secret-value";
pub const ADMIN_API_KEY: &str = "e2e-admin-api-key-0123456789";
pub const SEALING_SECRET: &str = "1:e2e-sealing-secret-0123456789abcdefghijkl";

/// The worker under test plus its mock provider.
pub struct Broker {
    pub base: String,
    pub mock: Arc<MockProvider>,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
    config: PathBuf,
    /// The local D1 files.
    pub state: PathBuf,
    /// How many D1 grant shards it was started with ([`Options::d1_shards`]).
    pub shards: usize,
    /// Every authid the tests obtained (checked against logs and the DB dump).
    pub authids: Mutex<Vec<String>>,
}
