//! The e2e harness: starts the mock provider (in process) and the built worker in
//! workerd (`wrangler dev`, own process group, throw-away local D1), and talks to
//! both over HTTP on 127.0.0.1. Everything it starts is stopped on drop, and a
//! watchdog stops the worker if this process dies without dropping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mock_provider::{Config, MockProvider};

pub const CLIENT_ID: &str = "demo-client";
pub const CLIENT_SECRET: &str = "e2e-client-secret-value";
pub const ADMIN_API_KEY: &str = "e2e-admin-api-key-0123456789";
pub const SEALING_SECRET: &str = "1:e2e-sealing-secret-0123456789abcdefghijkl";

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {}", self.status))
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Plain HTTP request; never follows redirects.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    request_bytes(method, url, headers, body.map(str::as_bytes))
}

/// Like [`request`], with a body of raw bytes (e.g. not UTF-8).
pub fn request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    // Generous: on a loaded 2-core machine fifty concurrent requests to one
    // workerd (each a D1 read or more) have been seen to take over a minute.
    try_request_bytes(method, url, headers, body, Duration::from_secs(150))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`request_bytes`], but a client with `patience`: no answer in time
/// (or no connection) is an `Err` naming the request (never its query).
pub fn try_request_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    patience: Duration,
) -> Result<Resp, String> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(patience)
        .build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        // Never `{e}`: ureq's message carries the whole URL, query and all
        // (codes, states, authids) — only its kind and transport message.
        Err(ureq::Error::Transport(t)) => {
            return Err(format!(
                "{method} {} failed: {:?} {}",
                url.split('?').next().unwrap_or(""),
                t.kind(),
                t.message().unwrap_or_default()
            ))
        }
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .flat_map(|n| {
            resp.all(&n)
                .into_iter()
                .map(|v| (n.clone(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut body = String::new();
    let _ = resp.into_reader().take(1 << 20).read_to_string(&mut body);
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Sends a GET and hangs up if no answer came within `patience`, as a client
/// with a short timeout does. True if it hung up (no answer in time).
pub fn get_and_hang_up(url: &str, headers: &[(&str, &str)], patience: Duration) -> bool {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(patience)
        .build();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    // Dropping the call's error drops the connection.
    matches!(req.call(), Err(ureq::Error::Transport(_)))
}

/// Polls `done` every 200 ms until it holds, failing after `limit` (generous:
/// it bounds a wait for work the worker finishes on its own time).
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long a starting worker may take to answer /healthz.
const READY_SECS: u64 = 240;

/// How to start a worker.
#[derive(Clone)]
pub struct Options {
    /// `SEALING_SECRET` and `SEALING_SECRETS_PREVIOUS`.
    pub sealing_secret: String,
    pub previous_secrets: Option<String>,
    /// Extra `KEY="value"` lines for the worker's secrets file.
    pub extra_vars: Vec<(String, String)>,
    /// `[[ratelimits]]` per authid, per IP, and per IP for pass-through (v2)
    /// refreshes (`RL_V2_PER_IP`), each per 60 s.
    pub per_grant_limit: u32,
    pub per_ip_limit: u32,
    pub per_ip_v2_limit: u32,
    /// Missed device-code lookups per client network (`RL_USER_CODE_48`) and
    /// from everyone (`RL_USER_CODE_GLOBAL`), per 60 s.
    pub user_code_network_limit: u32,
    pub user_code_global_limit: u32,
    /// Calls to the oauth-handler per client IP (`RL_MOVE_PER_IP`), per 60 s.
    pub move_per_ip_limit: u32,
    /// Pass-through refreshes per client network (`RL_V2_PER_48`) and
    /// pass-through tokens a provider may refuse (`RL_V2_REFUSED`), per 60 s.
    pub v2_network_limit: u32,
    pub v2_refusal_limit: u32,
    /// Reuse another run's local D1 (e.g. to restart with rotated secrets).
    pub state_dir: Option<PathBuf>,
    /// Apply only the migrations up to this file name (inclusive): a D1 made
    /// by an earlier schema, which a later start on the same `state_dir`
    /// upgrades.
    pub migrations_up_to: Option<&'static str>,
    /// More `OAUTH_PROVIDERS` entries (JSON objects, `{m}` is the mock's base
    /// URL), e.g. built-ins pointed at the mock; their secrets go in `extra_vars`.
    pub extra_providers: Vec<String>,
    /// How many D1 grant shards (docs/scale.md "Sharding"): bindings `DB`,
    /// `DB_2`, `DB_3`, … (database names `oauth-broker`, `oauth-broker-2`, …),
    /// every one migrated; `D1_SHARDS` is set only when more than one. A broker
    /// started again on the same `state_dir` with more shards keeps the first
    /// ones' databases (a shard added to a running deployment).
    pub d1_shards: usize,
    /// Run the fault-injection build (`build-faults/`, cargo feature
    /// `fault-injection`: `X-Broker-Fault` fails named D1 statements) instead
    /// of the release build (`build/`).
    pub fault_build: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sealing_secret: SEALING_SECRET.to_string(),
            previous_secrets: None,
            extra_vars: Vec::new(),
            // High: the suite's own bursts must not trip them (own tests cover 429).
            per_grant_limit: 100_000,
            per_ip_limit: 100_000,
            per_ip_v2_limit: 100_000,
            user_code_network_limit: 100_000,
            user_code_global_limit: 100_000,
            move_per_ip_limit: 100_000,
            v2_network_limit: 100_000,
            v2_refusal_limit: 100_000,
            state_dir: None,
            migrations_up_to: None,
            extra_providers: Vec::new(),
            d1_shards: 1,
            fault_build: false,
        }
    }
}

/// The `"account"` member of an `OAUTH_PROVIDERS` entry pointing a
/// built-in's account endpoint at the mock (`{m}`), as the mock plays that
/// provider (`mock_provider::ACCOUNT_QUIRKS`): tests reach loopback only.
pub fn mock_account(id: &str) -> &'static str {
    match id {
        "googledrive" => {
            r#""account":{"from":"endpoint","url":"{m}/drive/v3/about?fields=user","field":"user.permissionId"}"#
        }
        "onedrivev2" | "sharepoint" | "msgroup" => {
            r#""account":{"from":"endpoint","url":"{m}/v1.0/me/drive?$select=owner","field":"owner.user.id"}"#
        }
        "box.com" | "demo" => {
            r#""account":{"from":"endpoint","url":"{m}/2.0/users/me?fields=id","field":"id"}"#
        }
        // Dropbox and Jottacloud name it in the token answer; pCloud and gcs not at all.
        _ => r#""account":{"from":"none"}"#,
    }
}

/// A line of the Tail Worker (`[oauth-broker-e2e-tail-…] TAIL {…}`).
fn is_tail_line(line: &str) -> bool {
    line.starts_with("[oauth-broker-e2e-tail-") && line.contains("] TAIL ")
}

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

fn compatibility_date() -> String {
    let toml = std::fs::read_to_string(repo().join("wrangler.toml")).expect("wrangler.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("compatibility_date = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("compatibility_date in wrangler.toml")
}

fn wrangler() -> Command {
    let mut c = Command::new(repo().join("node_modules/.bin/wrangler"));
    c.env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .current_dir(repo());
    c
}

/// Runs a local `wrangler d1 …` command (arguments added by `args`) until it
/// succeeds, at most three times. Each run starts its own miniflare, which can fail
/// for reasons of its own (seen once while running this suite: the migration step
/// died on an internal `false == true` assertion), so one failure is not taken as
/// final. Safe for what runs through it: the migrations are `IF NOT EXISTS`, and
/// the tests' statements set values rather than add to them, so repeating one that
/// did run either changes nothing or fails loudly (e.g. a rename).
fn wrangler_d1(what: &str, args: impl Fn(&mut Command)) -> std::process::Output {
    three_times(what, || {
        let mut c = wrangler();
        args(&mut c);
        c
    })
}

/// Runs the command `make` builds until it succeeds, at most three times (see
/// [`wrangler_d1`]).
fn three_times(what: &str, make: impl Fn() -> Command) -> std::process::Output {
    let mut failures = Vec::new();
    for attempt in 1..=3 {
        let out = make()
            .output()
            .unwrap_or_else(|e| panic!("run wrangler {what}: {e}"));
        if out.status.success() {
            return out;
        }
        println!("    (wrangler {what} failed, attempt {attempt} of 3)");
        failures.push(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    panic!(
        "wrangler {what} failed three times:\n{}",
        failures.join("\n---\n")
    )
}

impl Broker {
    /// Starts mock + worker. Panics with the worker's log if it does not come up.
    pub fn start() -> Broker {
        let mock =
            MockProvider::start("127.0.0.1:0", CLIENT_ID, CLIENT_SECRET).expect("mock provider");
        Broker::start_with_mock(&Arc::new(mock))
    }

    /// Starts a worker (own local D1) against an existing mock provider.
    pub fn start_with_mock(mock: &Arc<MockProvider>) -> Broker {
        Broker::start_with(mock, Options::default())
    }

    /// Starts a worker with `opts` against an existing mock provider.
    pub fn start_with(mock: &Arc<MockProvider>, opts: Options) -> Broker {
        let mock = Arc::clone(mock);
        let shim = if opts.fault_build {
            repo().join("build-faults/worker/shim.mjs")
        } else {
            repo().join("build/worker/shim.mjs")
        };
        assert!(
            shim.exists(),
            "{} missing: run scripts/build.sh (scripts/test.sh does; the fault build: \
             BROKER_FEATURES=fault-injection BROKER_OUT=build-faults bash scripts/build.sh)",
            shim.display()
        );
        assert!((1..=999).contains(&opts.d1_shards), "d1_shards is 1..=999");
        static INSTANCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = INSTANCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = repo().join(format!("target/e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("e2e dir");
        let config = dir.join("wrangler.toml");
        let migrations = match opts.migrations_up_to {
            None => repo().join("migrations"),
            Some(last) => {
                let some = dir.join("migrations");
                std::fs::create_dir_all(&some).expect("migrations dir");
                for e in std::fs::read_dir(repo().join("migrations")).expect("migrations") {
                    let path = e.expect("entry").path();
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name <= last {
                        std::fs::copy(&path, some.join(name)).expect("copy a migration");
                    }
                }
                some
            }
        };
        // One [[d1_databases]] per shard; shard 1 keeps the id it always had, so
        // a state directory from before sharding is shard 1 of a sharded broker.
        let shards: String = (1..=opts.d1_shards)
            .map(|k| {
                format!(
                    "[[d1_databases]]\nbinding = \"{binding}\"\ndatabase_name = \"{name}\"\n\
                     database_id = \"00000000-0000-0000-0000-{id:012}\"\nmigrations_dir = \"{mig}\"\n\n",
                    binding = shard_binding(k),
                    name = shard_database_name(k),
                    id = if k == 1 { 0 } else { k },
                    mig = migrations.display(),
                )
            })
            .collect();
        // A Tail Worker beside it (`tests/e2e/tail/tail.js`), named for this
        // broker alone: its events, which keep query strings, are the log
        // source `Broker::tail_lines` reads.
        let tail_name = format!("oauth-broker-e2e-tail-{}-{n}", std::process::id());
        let tail_config = dir.join("tail.toml");
        std::fs::write(
            &tail_config,
            format!(
                "name = \"{tail_name}\"\nmain = \"{}\"\ncompatibility_date = \"{}\"\n",
                repo().join("tests/e2e/tail/tail.js").display(),
                compatibility_date(),
            ),
        )
        .expect("write tail config");
        std::fs::write(
            &config,
            format!(
                "name = \"oauth-broker-e2e\"\nmain = \"{main}\"\ncompatibility_date = \"{date}\"\n\
                 tail_consumers = [{{ service = \"{tail_name}\" }}]\n\n\
                 {shards}\
                 [[ratelimits]]\nname = \"RL_PER_GRANT\"\nnamespace_id = \"1001\"\n\
                 simple = {{ limit = {grant}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_PER_IP\"\nnamespace_id = \"1002\"\n\
                 simple = {{ limit = {ip}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_V2_PER_IP\"\nnamespace_id = \"1003\"\n\
                 simple = {{ limit = {v2}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_USER_CODE\"\nnamespace_id = \"1004\"\n\
                 simple = {{ limit = 10, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_USER_CODE_48\"\nnamespace_id = \"1005\"\n\
                 simple = {{ limit = {net}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_USER_CODE_GLOBAL\"\nnamespace_id = \"1006\"\n\
                 simple = {{ limit = {all}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_MOVE_PER_IP\"\nnamespace_id = \"1007\"\n\
                 simple = {{ limit = {moves}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_V2_PER_48\"\nnamespace_id = \"1008\"\n\
                 simple = {{ limit = {v2net}, period = 60 }}\n\n\
                 [[ratelimits]]\nname = \"RL_V2_REFUSED\"\nnamespace_id = \"1009\"\n\
                 simple = {{ limit = {v2refused}, period = 60 }}\n",
                v2net = opts.v2_network_limit,
                v2refused = opts.v2_refusal_limit,
                net = opts.user_code_network_limit,
                all = opts.user_code_global_limit,
                moves = opts.move_per_ip_limit,
                grant = opts.per_grant_limit,
                ip = opts.per_ip_limit,
                v2 = opts.per_ip_v2_limit,
                main = shim.display(),
                date = compatibility_date(),
            ),
        )
        .expect("write config");
        let m = mock.base_url();
        // The demo provider, and the built-ins box.com, pcloud and jottacloud (the
        // public client `jottacli`, no secret) pointed at the mock (so Duplicati's
        // ids and aliases are exercised against a real worker). pCloud's two
        // regions become two paths on the mock (`mock_provider::Region`): the test
        // seam is this override; the built-in entry allows only pCloud's hosts.
        let providers = format!(
            r#"[{{"id":"demo","name":"Demo provider","authorize_url":"{m}/authorize","token_url":"{m}/token","revoke_url":"{m}/revoke","scopes":"files.readwrite","client_id":"{CLIENT_ID}","pkce":true,"account":{{"from":"endpoint","url":"{m}/2.0/users/me?fields=id","field":"id"}}}},{{"id":"box.com","authorize_url":"{m}/authorize","token_url":"{m}/token","revoke_url":"{m}/revoke","client_id":"{CLIENT_ID}","account":{{"from":"endpoint","url":"{m}/2.0/users/me?fields=id","field":"id"}}}},{{"id":"pcloud","authorize_url":"{m}/authorize","token_url":"{m}/token","client_id":"{CLIENT_ID}","token_hosts":[{{"hostname":"api.pcloud.com","region":"US","token_url":"{m}/token"}},{{"hostname":"eapi.pcloud.com","region":"EU","token_url":"{m}/eu/token"}}]}},{{"id":"jottacloud","token_url":"{m}/token"}}{extra}]"#,
            extra = opts
                .extra_providers
                .iter()
                .map(|p| format!(",{}", p.replace("{m}", &m)))
                .collect::<String>()
        );
        let mut vars = format!(
            "OAUTH_PROVIDERS='{providers}'\nCLIENT_SECRET_DEMO=\"{CLIENT_SECRET}\"\n\
             CLIENT_SECRET_BOX_COM=\"{CLIENT_SECRET}\"\nCLIENT_SECRET_PCLOUD=\"{CLIENT_SECRET}\"\n\
             ADMIN_API_KEY=\"{ADMIN_API_KEY}\"\n\
             SEALING_SECRET=\"{}\"\nUPSTREAM_TIMEOUT_MS=\"3000\"\n\
             OAUTH_HANDLER_URL=\"{}\"\nOAUTH_HANDLER_API_KEY=\"{}\"\n",
            opts.sealing_secret,
            mock.oauth_handler_url(),
            mock_provider::oauth_handler::API_KEY,
        );
        if let Some(p) = &opts.previous_secrets {
            vars.push_str(&format!("SEALING_SECRETS_PREVIOUS=\"{p}\"\n"));
        }
        if opts.d1_shards > 1 {
            let list: Vec<String> = (1..=opts.d1_shards).map(shard_binding).collect();
            vars.push_str(&format!("D1_SHARDS=\"{}\"\n", list.join(" ")));
        }
        for (k, v) in &opts.extra_vars {
            vars.push_str(&format!("{k}=\"{v}\"\n"));
        }
        std::fs::write(dir.join("vars.env"), vars).expect("write vars");
        let state = opts.state_dir.clone().unwrap_or_else(|| dir.join("state"));
        // Every shard, through the operators' script (idempotent: a restart on
        // the same state applies only what a database lacks, e.g. a new shard).
        three_times("scripts/migrate.sh", || {
            let mut c = Command::new("bash");
            c.arg(repo().join("scripts/migrate.sh"))
                .arg("-c")
                .arg(&config)
                .args(["--local", "--persist-to"])
                .arg(&state)
                .env("WRANGLER_SEND_METRICS", "false")
                .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
                .current_dir(repo());
            c
        });
        let log = dir.join("worker.log");
        // A worker that exits or never answers (e.g. another process took the
        // free port between our probe and wrangler's bind) is started again on a
        // new port, at most three times.
        let mut failures = String::new();
        for attempt in 1..=3 {
            let port = free_port();
            let logfile = std::fs::File::create(&log).expect("log file");
            let mut cmd = wrangler();
            cmd.args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
                .arg("-c")
                .arg(&config)
                .arg("-c")
                .arg(&tail_config)
                .arg("--persist-to")
                .arg(&state)
                .arg("--env-file")
                .arg(dir.join("vars.env"))
                .args([
                    "--show-interactive-dev-session=false",
                    // `GET /__scheduled` runs the Cron Trigger's handler
                    // ([`Broker::run_scheduled`]); the config has no
                    // `[triggers]`, so it never runs by itself mid-test.
                    "--test-scheduled",
                    // `log`, not `info`: wrangler ranks the worker's
                    // `console.log` below `info`, and the log must hold every
                    // line the worker writes (the purge's line; the leak scans).
                    "--log-level",
                    "log",
                ])
                .stdin(Stdio::null())
                .stdout(logfile.try_clone().expect("log fd"))
                .stderr(logfile);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = cmd.spawn().expect("spawn wrangler dev");
            let pgid = child.id();
            // If this test process dies without dropping Broker, stop the worker's group.
            let watchdog = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "while kill -0 {me} 2>/dev/null && kill -0 {pgid} 2>/dev/null; do sleep 1; done; \
                     kill -TERM -- -{pgid} 2>/dev/null; sleep 2; kill -KILL -- -{pgid} 2>/dev/null; true",
                    me = std::process::id()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok();
            let mut broker = Broker {
                base: format!("http://127.0.0.1:{port}"),
                mock: Arc::clone(&mock),
                dir: dir.clone(),
                log: log.clone(),
                child: Some(child),
                watchdog,
                config: config.clone(),
                state: state.clone(),
                shards: opts.d1_shards,
                authids: Mutex::new(Vec::new()),
            };
            match broker.wait_ready() {
                Ok(()) => return broker,
                Err(why) => {
                    failures.push_str(&format!(
                        "attempt {attempt}: {why}; log:\n{}\n",
                        broker.log_text()
                    ));
                    eprintln!("worker start attempt {attempt} failed ({why}); retrying");
                    broker.stop();
                    // Keep its directory (config, vars, state) for the next attempt.
                    std::mem::forget(broker);
                }
            }
        }
        panic!("the worker did not start:\n{failures}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        // Generous: on a loaded 2-core machine wrangler + workerd can take a minute
        // to come up, and the first answers can take seconds each.
        let deadline = Instant::now() + Duration::from_secs(READY_SECS);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        while Instant::now() < deadline {
            if let Ok(r) = agent.get(&format!("{}/healthz", self.base)).call() {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("wrangler dev exited ({status})"));
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Err(format!("no answer to /healthz within {READY_SECS} s"))
    }

    /// The worker's own socket, behind `wrangler dev`'s proxy worker (`base`).
    /// That proxy passes the worker's answer on only once it has sent the worker
    /// the whole request body, so whatever the worker does before reading a body is
    /// visible only here. Found as the loopback port, held by a process of the
    /// worker's process group, other than `base`'s, that answers `GET /healthz` with
    /// `ok` (the inspector and control ports do not).
    pub fn worker_socket(&self) -> Option<SocketAddr> {
        let pgid = self.child.as_ref()?.id();
        let base_port = self.base.rsplit(':').next()?.parse::<u16>().ok()?;
        listening_ports_of_group(pgid)
            .into_iter()
            .filter(|p| *p != base_port)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .find(|addr| {
                let probe =
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                raw_exchange(*addr, probe, false, Duration::from_secs(10))
                    .is_some_and(|r| r.status == 200 && r.body.trim() == "ok")
            })
    }

    /// What wrangler and the worker printed (request lines without their
    /// query strings, the worker's console), without the Tail Worker's lines.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !is_tail_line(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The Tail Worker's events (`tests/e2e/tail/tail.js`): each request's
    /// full URL, query string included, and the worker's console lines, as
    /// `wrangler tail`, Tail Workers and Logpush see them.
    pub fn tail_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| is_tail_line(l))
            .filter_map(|l| l.split_once(" TAIL ").map(|(_, json)| json))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Resp {
        request("GET", &self.url(path), &[], None)
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        request("GET", &self.url(path), headers, None)
    }

    pub fn post_form(&self, path: &str, body: &str) -> Resp {
        request(
            "POST",
            &self.url(path),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(body),
        )
    }

    /// `GET /refresh` the way Duplicati does: header `X-AuthID`.
    pub fn refresh(&self, authid: &str) -> Resp {
        self.get_with("/refresh", &[("X-AuthID", authid)])
    }

    /// Fires the Cron Trigger once, as Cloudflare does every minute
    /// (`wrangler.toml` `[triggers]`), through `wrangler dev --test-scheduled`'s
    /// `GET /__scheduled`, which answers once the handler has finished.
    pub fn run_scheduled(&self) {
        let r = self.get("/__scheduled?cron=*+*+*+*+*");
        assert_eq!(r.status, 200, "the scheduled handler ran: {}", r.body);
    }

    /// Resets the mock's switches to defaults (single-use rotation, 1 h tokens).
    pub fn reset_mock(&self) {
        self.mock.set_config(Config::default());
    }

    /// Runs SQL against the worker's local D1 (a separate wrangler process on
    /// the same files): shard 1, where every unsharded table lives.
    pub fn d1(&self, sql: &str) -> serde_json::Value {
        self.d1_on(1, sql)
    }

    /// Runs SQL against shard `shard` (1-based) of the worker's local D1.
    pub fn d1_on(&self, shard: usize, sql: &str) -> serde_json::Value {
        assert!(
            (1..=self.shards).contains(&shard),
            "shard {shard} of a broker with {} shards",
            self.shards
        );
        let binding = shard_binding(shard);
        let out = wrangler_d1("d1 execute", |c| {
            c.args([
                "d1",
                "execute",
                &binding,
                "--local",
                "--json",
                "--persist-to",
            ])
            .arg(&self.state)
            .arg("-c")
            .arg(&self.config)
            .args(["--command", sql]);
        });
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("d1 execute --json output");
        v[0]["results"].clone()
    }

    /// Rewrites the stored grant so its cached access token counts as expired
    /// (the test knows the authid and the sealing secret, like the broker).
    pub fn expire_access_token(&self, authid: &str) {
        use oauth_broker::authid::{parse_authid, ParsedAuthId};
        use oauth_broker::grant::Grant;
        use oauth_broker::seal::{Sealed, ServerKeys};
        let keys = ServerKeys::parse(SEALING_SECRET, None).expect("keys");
        // The shard tag only routes: the key hash and the seal are the untagged
        // authid's (docs/scale.md "Sharding").
        let (shard, untagged) = shard_of(authid);
        let Ok(ParsedAuthId::V1(id)) = parse_authid(untagged) else {
            panic!("v1 authid expected")
        };
        let kh = keys.key_hash(&id);
        let row = &self.d1_on(
            shard,
            &format!(
                "SELECT provider, key_version, nonce, ciphertext, status FROM grants \
             WHERE key_hash = '{kh}'"
            ),
        )[0];
        let provider = row["provider"].as_str().expect("provider");
        let sealed = Sealed {
            key_version: row["key_version"].as_u64().expect("version") as u32,
            nonce: row["nonce"].as_str().expect("nonce").to_string(),
            ciphertext: row["ciphertext"].as_str().expect("ct").to_string(),
        };
        let plain = keys.open(&id, provider, &kh, &sealed).expect("open");
        if row["status"] == "standby" {
            // A successor not used yet holds no grant, only the authid it
            // succeeds (docs/storage.md "Successors"): its first use takes
            // over that one's grant as it is then.
            let standby: serde_json::Value = serde_json::from_slice(&plain).expect("standby");
            let of = standby["successor_of"].as_str().expect("successor_of");
            return self.expire_access_token(of);
        }
        let mut grant = Grant::from_bytes(&plain).expect("grant");
        grant.expires_at = 0;
        let (_, resealed) = keys.seal(&id, provider, &grant.to_bytes()).expect("seal");
        self.d1_on(
            shard,
            &format!(
                "UPDATE grants SET nonce = '{}', ciphertext = '{}' WHERE key_hash = '{kh}'",
                resealed.nonce, resealed.ciphertext
            ),
        );
    }

    /// Every SQLite file of the local D1 (database, WAL, journal).
    pub fn d1_files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else if path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains(".sqlite"))
                    {
                        out.push(path);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.state.join("v3").join("d1"), &mut out);
        out
    }

    /// Browser-less login: /login → mock authorize → /callback with the cookie.
    /// Returns the authid shown on the result page.
    pub fn login(&self) -> String {
        self.login_at("/login?id=demo")
    }

    /// Browser-less login starting at `login_path` (e.g. `/login?id=box&tokenversion=2`).
    pub fn login_at(&self, login_path: &str) -> String {
        let (callback, cookie) = self.login_to_callback(login_path);
        let page = request("GET", &callback, &[("Cookie", &cookie)], None);
        assert_eq!(page.status, 200, "result page: {}", page.body);
        let authid = extract_authid(&page.body).expect("authid on result page");
        self.remember(&authid);
        authid
    }

    pub fn remember(&self, authid: &str) {
        self.authids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(authid.to_string());
    }

    /// /login then the mock's authorize; returns the callback URL and the cookie pair.
    pub fn start_login_to_callback(&self) -> (String, String) {
        self.login_to_callback("/login?id=demo")
    }

    /// The mock's authorize at `authorize` (it consents at once): the callback
    /// URL it redirects the browser to, checked to lead back to the broker.
    fn consent_at_mock(&self, authorize: &str) -> String {
        let consent = request("GET", authorize, &[], None);
        assert_eq!(consent.status, 302, "mock authorize");
        let callback = consent.header("Location").expect("callback").to_string();
        assert!(
            callback.starts_with(&self.base),
            "callback goes to the broker"
        );
        callback
    }

    /// Like [`Broker::start_login_to_callback`] from any login path; the cookie
    /// string holds every cookie the login set.
    pub fn login_to_callback(&self, login_path: &str) -> (String, String) {
        let start = self.get(login_path);
        assert_eq!(start.status, 302, "login: {}", start.body);
        let cookie = start
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Set-Cookie"))
            .filter_map(|(_, v)| v.split(';').next())
            .collect::<Vec<_>>()
            .join("; ");
        assert!(!cookie.is_empty(), "login sets a cookie");
        let authorize = start.header("Location").expect("Location").to_string();
        (self.consent_at_mock(&authorize), cookie)
    }
}

/// One browser's cookies for the broker: kept from `Set-Cookie` answers (an
/// empty value or `Max-Age=0` deletes one), sent back as one `Cookie` header.
/// Two jars are two browsers.
#[derive(Default, Debug, Clone)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    /// Keeps the cookies `r` sets.
    pub fn keep(&mut self, r: &Resp) {
        for (k, v) in &r.headers {
            if !k.eq_ignore_ascii_case("Set-Cookie") {
                continue;
            }
            let Some((name, value)) = v.split(';').next().and_then(|kv| kv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            self.0.retain(|(n, _)| *n != name);
            if !value.is_empty() && !v.contains("Max-Age=0") {
                self.0.push((name, value));
            }
        }
    }

    /// The `Cookie` header this browser sends (empty when it has none).
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Broker {
    /// `method` `url` from the browser `jar`: its cookies sent, the answer's kept.
    fn in_jar(&self, jar: &mut Jar, method: &str, url: &str, body: Option<&str>) -> Resp {
        let cookie = jar.header();
        let mut headers = Vec::new();
        if body.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        let r = request(method, url, &headers, body);
        jar.keep(&r);
        r
    }

    /// GET `path` from the browser `jar`.
    pub fn get_in(&self, jar: &mut Jar, path: &str) -> Resp {
        self.in_jar(jar, "GET", &self.url(path), None)
    }

    /// POST a form to `path` from the browser `jar` (a same-site form post).
    pub fn post_form_in(&self, jar: &mut Jar, path: &str, body: &str) -> Resp {
        self.in_jar(jar, "POST", &self.url(path), Some(body))
    }

    /// A browser's login from `login_path` in `jar`: /login, the mock's
    /// authorize (which consents at once), the callback. Returns the callback's
    /// answer (the result page) and the authorize URL the broker sent the
    /// browser to.
    pub fn login_in(&self, jar: &mut Jar, login_path: &str) -> (Resp, String) {
        let start = self.get_in(jar, login_path);
        assert_eq!(start.status, 302, "login: {}", start.body);
        let authorize = start.header("Location").expect("Location").to_string();
        let callback = self.consent_at_mock(&authorize);
        (self.in_jar(jar, "GET", &callback, None), authorize)
    }
}

/// A fetch token shaped like the ones Duplicati's old UI makes,
/// `Math.random().toString(36).substr(2) + Math.random().toString(36).substr(2)`
/// (`EditUriBuiltins.js`; see `oauth_broker::handoff::MIN_TOKEN_BITS`): two
/// base-36 expansions of a random 53-bit fraction, up to 11 digits each.
pub fn duplicati_token() -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::new();
    for _ in 0..2 {
        let mut buf = [0u8; 8];
        oauth_broker::random::fill(&mut buf).expect("randomness");
        let mut x = (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64;
        for _ in 0..11 {
            x *= 36.0;
            let d = x.floor();
            out.push(DIGITS[d as usize] as char);
            x -= d;
            if x == 0.0 {
                break;
            }
        }
    }
    out
}

/// The result page's confirmation token (the hand-off form's hidden `confirm`).
pub fn extract_confirm(html: &str) -> Option<String> {
    let marker = "name=\"confirm\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

/// Sends `bytes` (a whole request as it goes on the wire, or only its start) over a
/// fresh connection to `addr`, then either keeps sending open or, with `end`,
/// closes it (the request ends there, cut short if it said it was longer), and
/// returns the answer that arrived within `wait`, or `None` when none did. For
/// requests an HTTP client library will not send: a `Content-Length` larger than
/// the bytes that follow, a chunked body that never ends. Every read is bounded
/// by what is left of `wait`.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], end: bool, wait: Duration) -> Option<Resp> {
    let deadline = Instant::now() + wait;
    let mut s = TcpStream::connect_timeout(&addr, wait).ok()?;
    s.set_write_timeout(Some(wait)).ok()?;
    s.write_all(bytes).ok()?;
    if end {
        s.shutdown(std::net::Shutdown::Write).ok()?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the head is complete and the body is as long as it says (or EOF).
    loop {
        if let Some(resp) = parse_response(&got) {
            return Some(resp);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return parse_head(&got).map(|(resp, _)| resp),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// The status line and headers of an HTTP/1.1 answer, and where its body starts.
fn parse_head(raw: &[u8]) -> Option<(Resp, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let resp = Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[end..]).into_owned(),
    };
    Some((resp, end))
}

/// A complete answer: its head and `Content-Length` bytes of body.
fn parse_response(raw: &[u8]) -> Option<Resp> {
    let (resp, start) = parse_head(raw)?;
    let len: usize = resp.header("Content-Length")?.parse().ok()?;
    (raw.len() >= start + len).then_some(resp)
}

/// Loopback ports on which a process of process group `pgid` listens (Linux `/proc`).
fn listening_ports_of_group(pgid: u32) -> Vec<u16> {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // /proc/<pid>/stat: "pid (comm) state ppid pgrp …"; comm may hold spaces.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let group = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok());
        if group != Some(pgid) {
            continue;
        }
        for fd in std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let link = std::fs::read_link(fd.path()).unwrap_or_default();
            let link = link.to_string_lossy();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|l| l.strip_suffix(']'))
            {
                inodes.push(inode.to_string());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let listening = cols.get(3) == Some(&"0A");
            if listening && cols.get(9).is_some_and(|i| inodes.iter().any(|x| x == i)) {
                let port = cols
                    .get(1)
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                ports.extend(port);
            }
        }
    }
    ports
}

/// `period` of the test workers' `[[ratelimits]]` (seconds).
pub const RATE_LIMIT_PERIOD: u64 = 60;

/// Milliseconds since the unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sleeps until the local rate limiter's next window has begun.
fn sleep_into_next_rate_limit_window() {
    let period_ms = RATE_LIMIT_PERIOD * 1000;
    let left = period_ms - unix_ms() % period_ms;
    std::thread::sleep(Duration::from_millis(left + 500));
}

/// Runs `f` so that every request it makes is counted in one window of the local
/// rate limiter, and returns what `f` observed (assert on that, not inside `f`).
///
/// The limiter `wrangler dev` runs (miniflare's) counts in fixed windows aligned
/// to the unix clock (`now / period`) and forgets every count when the next window
/// starts, so a sequence that counts hits across that edge sees a limit that was
/// never reached. `f` starts only with at least 20 s of its window left (else after
/// sleeping into the next one); if the clock still crossed an edge while it ran,
/// what it saw is discarded and it runs again at the start of a fresh window,
/// which is empty because nothing is sent while we sleep. At most three runs.
/// Counts made before the first run stay in its window: start from a worker
/// nothing limited has hit yet, or let `f` exhaust the limit itself.
pub fn in_one_rate_limit_window<T>(mut f: impl FnMut() -> T) -> T {
    let period_ms = RATE_LIMIT_PERIOD * 1000;
    let left = period_ms - unix_ms() % period_ms;
    if left < 20_000 {
        println!(
            "    (waiting {:.0} s for a fresh rate-limit window)",
            left as f64 / 1000.0
        );
        sleep_into_next_rate_limit_window();
    }
    for _ in 0..3 {
        let window = unix_ms() / period_ms;
        let seen = f();
        if unix_ms() / period_ms == window {
            return seen;
        }
        println!("    (a rate-limit window ended mid-run: running again in a fresh one)");
        sleep_into_next_rate_limit_window();
    }
    panic!("three runs in a row each spanned two rate-limit windows")
}

/// Shard `k`'s D1 binding: `DB`, `DB_2`, `DB_3`, …
pub fn shard_binding(k: usize) -> String {
    if k == 1 {
        "DB".to_string()
    } else {
        format!("DB_{k}")
    }
}

/// Shard `k`'s database name: `oauth-broker`, `oauth-broker-2`, …
pub fn shard_database_name(k: usize) -> String {
    if k == 1 {
        "oauth-broker".to_string()
    } else {
        format!("oauth-broker-{k}")
    }
}

/// The shard an authid names and the authid without its tag: `s<k>:<rest>`
/// (k = 2..=999, no leading zero) is shard k, anything else shard 1 as it is.
/// The tests' own reading of the spelling, independent of the broker's parser.
pub fn shard_of(authid: &str) -> (usize, &str) {
    authid
        .strip_prefix('s')
        .and_then(|t| t.split_once(':'))
        .filter(|(k, _)| {
            !k.is_empty() && !k.starts_with('0') && k.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|(k, rest)| Some((k.parse::<usize>().ok()?, rest)))
        .filter(|(k, _)| (2..=999).contains(k))
        .unwrap_or((1, authid))
}

/// The authid from a result page (`data-authid="…"`).
pub fn extract_authid(html: &str) -> Option<String> {
    let start = html.find("data-authid=\"")? + "data-authid=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

impl Broker {
    /// Stops the worker's process group (and its watchdog).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id().to_string();
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pgid}")])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
