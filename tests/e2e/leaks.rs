//! Run last: nothing secret may be in the database files or the worker's logs,
//! and the log that keeps query strings (the Tail Worker's events: what
//! `wrangler tail`, Tail Workers and Logpush see) holds nothing that still works.

use crate::harness::Broker;

pub const TESTS: &[crate::Test] = tests![
    database_files_contain_no_token_authid_or_account_in_plaintext,
    worker_logs_contain_no_authid_token_or_code,
    a_log_that_keeps_query_strings_holds_no_authid_token_or_code,
    every_line_the_worker_logged_is_one_json_object_naming_its_event,
];

/// Every secret value the run produced: the mock's tokens and codes, the authids
/// (whole and each half), the client secret, and the Jottacloud CLI token's
/// `auth_token` (the mock's password). The front door's one-time values are
/// remembered with the authids (`Broker::remember`): authorization codes and
/// OAuth clients' `state` (`oauth_code.rs`), device codes and user codes, with
/// and without the dash (`device.rs`).
fn secrets(b: &Broker) -> Vec<String> {
    let s = b.mock.stats();
    let mut all: Vec<String> = s
        .issued_access_tokens
        .into_iter()
        .chain(s.issued_refresh_tokens)
        .chain(s.issued_codes)
        .collect();
    for a in b.authids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        all.push(a.clone());
        if let Some(rest) = a.strip_prefix("v2:") {
            // v2:<provider>:<refresh token>: the token is already in the mock's list.
            assert!(rest.contains(':'));
        } else if let Some((keyid, secret)) = untagged(a).split_once(':') {
            all.push(keyid.to_string());
            all.push(secret.to_string());
        }
    }
    all.push(crate::harness::CLIENT_SECRET.to_string());
    all.push(mock_provider::Config::default().password);
    all
}

/// A stored authid without its shard tag (`s<k>:<keyid>:<secret>` on shard
/// k >= 2, `oauth_broker::authid`): the tag is not secret, keyid and secret are.
fn untagged(authid: &str) -> &str {
    match authid.strip_prefix('s').and_then(|r| r.split_once(':')) {
        Some((k, rest)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => authid,
    }
}

fn database_files_contain_no_token_authid_or_account_in_plaintext(b: &Broker) {
    let secrets = secrets(b);
    assert!(secrets.len() > 20, "the run produced secrets to look for");
    let rows = b.d1("SELECT COUNT(*) AS n FROM grants")[0]["n"]
        .as_i64()
        .unwrap_or(0);
    assert!(rows > 5, "grants were stored ({rows})");
    // Device logins not collected stay until they expire and the Cron
    // Trigger purges them (`purge.rs` keeps an unexpired one): the scan below
    // reads their rows too (authorization codes are deleted when presented).
    let devices = b.d1("SELECT COUNT(*) AS n FROM device_codes")[0]["n"]
        .as_i64()
        .unwrap_or(0);
    assert!(devices > 0, "device codes were stored ({devices})");
    // Listed after the query above: `wrangler d1 execute` itself creates and
    // removes SQLite's -wal/-shm/-journal side files.
    let files = b.d1_files();
    assert!(!files.is_empty(), "found the local D1 files");
    for f in files {
        let bytes = match std::fs::read(&f) {
            Ok(bytes) => bytes,
            // A side file SQLite removed since it was listed holds nothing now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", f.display()),
        };
        let text = String::from_utf8_lossy(&bytes);
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{} holds a secret in plaintext",
                f.display()
            );
        }
        for needle in ["mock-user", "Mock User", "mockRT_", "mockAT_", "mockCODE_"] {
            assert!(!text.contains(needle), "{} holds {needle}", f.display());
        }
    }
}

fn worker_logs_contain_no_authid_token_or_code(b: &Broker) {
    let log = b.log_text();
    assert!(
        log.contains("/refresh"),
        "the log captured the run's requests"
    );
    for s in secrets(b) {
        assert!(!log.contains(s.as_str()), "worker log leaks a secret");
    }
}

fn a_log_that_keeps_query_strings_holds_no_authid_token_or_code(b: &Broker) {
    let events = b.tail_events();
    let urls: Vec<&str> = events.iter().filter_map(|e| e["url"].as_str()).collect();
    // The source keeps query strings: Akeeba's refresh URLs arrive whole.
    assert!(
        urls.iter()
            .any(|u| u.contains("/akeeba/box/refresh?refresh_token=")),
        "the tail saw Akeeba's refresh URLs with their query strings"
    );
    assert!(urls.iter().any(|u| u.contains("/callback/demo?")));
    // Neither a URL (whatever a client put in its query: Akeeba's authid, the
    // legacy /refresh?authid=, a provider's code) nor a line the worker wrote
    // holds a secret of the run as it is. (The runtime redacts values shaped
    // like identifiers in trace events; an authid shows as
    // `REDACTED%REDACTED`. This proves that it does so for every value of ours.)
    let text: String = events.iter().map(|e| e.to_string()).collect();
    for s in secrets(b) {
        if !text.contains(s.as_str()) {
            continue;
        }
        // RFC 8628 §3.3.1 puts the user code in the verification page's URL
        // (`verification_uri_complete`, the page's own links): worthless
        // without the user's click in a browser with the page's cookie and a
        // provider login (SECURITY.md "What is logged").
        let only_on_the_device_page = events
            .iter()
            .filter(|e| e.to_string().contains(s.as_str()))
            .all(|e| {
                let url = e["url"].as_str().unwrap_or_default();
                url.split('?')
                    .next()
                    .unwrap_or_default()
                    .ends_with("/device")
            });
        if only_on_the_device_page && oauth_broker::device::normalize_user_code(&s).is_some() {
            continue;
        }
        // Which kind of value, and where (never the value itself).
        let holder = events
            .iter()
            .find(|e| e.to_string().contains(s.as_str()))
            .map(|e| {
                e["url"]
                    .as_str()
                    .unwrap_or_default()
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            });
        let kind: String = s
            .chars()
            .take(7)
            .filter(|c| c.is_ascii_alphabetic())
            .collect();
        panic!("a tail event holds a secret of the run: {kind}… at {holder:?}");
    }
}

/// Structured logs (`src/shell/log.rs`): every console line of the whole run,
/// as the Tail Worker received it (each line's arguments), is one JSON object
/// with an `event`, so Workers Logs indexes its fields.
fn every_line_the_worker_logged_is_one_json_object_naming_its_event(b: &Broker) {
    let events = b.tail_events();
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| e["logs"].as_array())
        .flatten()
        .map(|message| {
            let args: Vec<String> = match message {
                serde_json::Value::Array(args) => args.clone(),
                other => vec![other.clone()],
            }
            .into_iter()
            .map(|arg| match arg {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
            // `wrangler dev` runs the broker next to the Tail Worker and puts
            // the worker's name (`[oauth-broker-e2e]`) in front of each line.
            match args.split_first() {
                Some((first, rest))
                    if !rest.is_empty() && first.starts_with('[') && first.ends_with(']') =>
                {
                    rest.join(" ")
                }
                _ => args.join(" "),
            }
        })
        .collect();
    assert!(
        lines.len() >= 5,
        "the run logged lines: {} seen",
        lines.len()
    );
    // Not the broker's lines: `wrangler dev`'s own middleware (only in dev:
    // node_modules/wrangler/templates/middleware/middleware-ensure-req-body-drained.ts)
    // logs this, with the error after it, when it cannot drain a request body
    // the broker did not read (one refused before it was needed).
    const RUNTIME: &[&str] = &["Failed to drain the unused request body."];
    let mut events_seen = std::collections::BTreeSet::new();
    for line in lines
        .iter()
        .filter(|l| !RUNTIME.iter().any(|r| l.starts_with(r)))
    {
        let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
        let event = parsed
            .as_ref()
            .and_then(|v| v.as_object())
            .and_then(|o| o.get("event"))
            .and_then(|e| e.as_str());
        match event {
            Some(e) => {
                events_seen.insert(e.to_string());
            }
            // Its first characters name what wrote it (lines hold no secret).
            None => panic!(
                "a worker log line is not a JSON object with an event: {:?}",
                line.chars().take(40).collect::<String>()
            ),
        }
    }
    for expected in ["request_failed", "upstream_token"] {
        assert!(
            events_seen.contains(expected),
            "{expected}: {events_seen:?}"
        );
    }
}
