//! Starting and stopping the worker under test: `wrangler dev` in its own
//! process group with a throw-away local D1 and a watchdog, the mock provider,
//! the worker's log and its Tail Worker's events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mock_provider::{Config, MockProvider};

use super::{
    free_port, raw_exchange, shard_binding, shard_database_name, three_times, Broker,
    ADMIN_API_KEY, CLIENT_ID, CLIENT_SECRET, SEALING_SECRET,
};

pub(super) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

fn compatibility_date() -> String {
    let toml = std::fs::read_to_string(repo().join("wrangler.toml")).expect("wrangler.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("compatibility_date = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("compatibility_date in wrangler.toml")
}

pub(super) fn wrangler() -> Command {
    let mut c = Command::new(repo().join("node_modules/.bin/wrangler"));
    c.env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .current_dir(repo());
    c
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
