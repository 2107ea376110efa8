//! Expired rows of every short-lived table are purged on a Cron Trigger and
//! never used (docs/storage.md "Expiry"). The rows are made through the real
//! routes (a login start, a hand-off with its sealed authid and confirmation,
//! an authorization code, an approved device login), aged by SQL (no test
//! waits for a clock), and the trigger is fired through `wrangler dev
//! --test-scheduled` ([`Broker::run_scheduled`]). What is checked is read in
//! the database itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth_broker::digest::sha256_hex;
use oauth_broker::handoff::token_hash;
use serde_json::Value;

use crate::device::device_start;
use crate::harness::{
    duplicati_token, enc, extract_authid, extract_confirm, param, query_of, request, through_login,
    token_post, wait_for, Broker, Jar, Options, Resp, LOOPBACK,
};

pub const TESTS: &[crate::Test] = tests![
    expired_rows_of_every_short_lived_table_are_purged_by_the_cron_trigger,
    expired_hand_offs_and_device_logins_are_never_used_before_the_purge,
    the_purge_runs_on_every_shard_and_a_failing_one_stops_no_other,
];

/// Every short-lived table and the column that keys its rows.
const SHORT_LIVED: [(&str, &str); 4] = [
    ("login_states", "state_hash"),
    ("fetch_tokens", "token_hash"),
    ("authorization_codes", "code_hash"),
    ("device_codes", "device_code_hash"),
];

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Unix seconds on this machine, the worker's clock too.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A started login (`/login`, no callback yet): its `state_hash`.
fn login_started(b: &Broker) -> String {
    let r = b.get("/login?id=demo");
    assert_eq!(r.status, 302, "login start: {}", r.body);
    let to = r.header("Location").expect("Location");
    let state = param(&query_of(to), "state").expect("state").to_string();
    sha256_hex(&state)
}

/// A hand-off registered by a browser: the browser and the token.
fn handoff_registered(b: &Broker) -> (Jar, String) {
    let token = duplicati_token();
    let mut jar = Jar::default();
    let r = b.get_in(&mut jar, &format!("/?type=demo&token={token}"));
    assert_eq!(r.status, 200, "register: {}", r.body);
    (jar, token)
}

/// A hand-off whose login finished: the authid sealed in the row, waiting for
/// the confirmation on the result page. The browser, the token and that
/// confirmation.
fn handoff_sealed(b: &Broker) -> (Jar, String, String) {
    let (mut jar, token) = handoff_registered(b);
    let (page, _) = b.login_in(&mut jar, &format!("/login?id=demo&token={token}"));
    assert_eq!(page.status, 200, "result page: {}", page.body);
    b.remember(&extract_authid(&page.body).expect("authid"));
    let confirm = extract_confirm(&page.body).expect("the confirmation form");
    (jar, token, confirm)
}

/// An authorization code issued to a loopback client: its `code_hash`.
fn authorization_code(b: &Broker) -> String {
    let mut jar = Jar::default();
    let r = through_login(
        b,
        &mut jar,
        &format!(
            "/oauth/authorize?response_type=code&client_id=demo&redirect_uri={}",
            enc(LOOPBACK)
        ),
    );
    assert_eq!(r.status, 302, "callback: {}", r.body);
    let to = r.header("Location").expect("Location");
    let code = param(&query_of(to), "code").expect("code").to_string();
    b.remember(&code);
    sha256_hex(&format!("oauth-broker/v1/authorization-code|{code}"))
}

/// A device login (`POST /oauth/device_authorization`): its device code.
fn device_pending(b: &Broker) -> (String, String) {
    let v = device_start(b);
    let device_code = v["device_code"].as_str().expect("device_code").to_string();
    let user_code = v["user_code"].as_str().expect("user_code").to_string();
    (device_code, user_code)
}

/// A device login the user approved from `ip` (code typed, "Continue",
/// provider login) and the device has not collected yet: its device code.
fn device_approved(b: &Broker, ip: &str) -> String {
    let (device_code, user_code) = device_pending(b);
    let mut jar = Jar::default();
    let ask = request(
        "POST",
        &b.url("/device"),
        &[FORM, ("CF-Connecting-IP", ip)],
        Some(&format!("user_code={}", enc(&user_code))),
    );
    jar.keep(&ask);
    assert_eq!(ask.status, 200, "code check: {}", ask.body);
    let marker = "id=\"approve\" href=\"";
    let start = ask.body.find(marker).expect("the approve link") + marker.len();
    let end = ask.body[start..].find('"').expect("end of href") + start;
    let href = ask.body[start..end].replace("&amp;", "&");
    let done = through_login(b, &mut jar, &href);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Return to your"), "{}", done.body);
    device_code
}

fn device_code_hash(device_code: &str) -> String {
    sha256_hex(&format!("oauth-broker/v1/device-code|{device_code}"))
}

/// Per short-lived table, `<table>_aged` and `<table>_kept`: how many of its
/// rows keyed `aged[i]` and `kept[i]` exist; `<table>_expired`: how many of
/// all its rows expired by `by`. One query (each `wrangler d1` call starts a
/// process).
fn counts(b: &Broker, aged: &[String; 4], kept: &[String; 4], by: i64) -> Value {
    let columns: Vec<String> = SHORT_LIVED
        .iter()
        .zip(aged.iter().zip(kept))
        .map(|((table, key), (a, k))| {
            format!(
                "(SELECT COUNT(*) FROM {table} WHERE {key} = '{a}') AS {table}_aged, \
                 (SELECT COUNT(*) FROM {table} WHERE {key} = '{k}') AS {table}_kept, \
                 (SELECT COUNT(*) FROM {table} WHERE expires_at <= {by}) AS {table}_expired"
            )
        })
        .collect();
    b.d1(&format!("SELECT {}", columns.join(", ")))[0].clone()
}

/// The last purge line in `b`'s log (one JSON object per run). `wrangler
/// dev` writes the worker's console to its log on its own time, so the line
/// is waited for.
fn last_purge_line(b: &Broker) -> Value {
    const MARK: &str = "\"event\":\"purge_expired\"";
    wait_for("the purge's log line", Duration::from_secs(60), || {
        b.log_text().contains(MARK)
    });
    let log = b.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(MARK))
        .expect("the purge logged its line");
    let (start, end) = (
        line.find('{').expect("a JSON object"),
        line.rfind('}').expect("a JSON object"),
    );
    serde_json::from_str(&line[start..=end]).expect("the purge line is JSON")
}

fn expired_rows_of_every_short_lived_table_are_purged_by_the_cron_trigger(b: &Broker) {
    // The tables with an `expires_at` are exactly the ones this test covers:
    // a new short-lived table fails here until the purge (and this test) know it.
    let tables = b.d1(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%expires_at%' \
         ORDER BY name",
    );
    let mut names: Vec<&str> = tables
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    names.sort_unstable();
    let mut want: Vec<&str> = SHORT_LIVED.iter().map(|(t, _)| *t).collect();
    want.sort_unstable();
    assert_eq!(names, want, "the short-lived tables");

    // Two rows in each table, through the routes: one to age, one to keep.
    let aged = [
        login_started(b),
        token_hash(&handoff_sealed(b).1),
        authorization_code(b),
        device_code_hash(&device_approved(b, "198.51.100.61")),
    ];
    let kept = [
        login_started(b),
        token_hash(&handoff_registered(b).1),
        authorization_code(b),
        device_code_hash(&device_pending(b).0),
    ];
    // Aged: expired a second ago. Kept: an hour to go (however slow this
    // machine, the purge cannot find it expired).
    let now = unix_now();
    let ageing: Vec<String> = SHORT_LIVED
        .iter()
        .zip(aged.iter().zip(&kept))
        .map(|((table, key), (a, k))| {
            format!(
                "UPDATE {table} SET expires_at = {past} WHERE {key} = '{a}'; \
                 UPDATE {table} SET expires_at = {future} WHERE {key} = '{k}'",
                past = now - 1,
                future = now + 3600
            )
        })
        .collect();
    b.d1(&ageing.join("; "));
    let what = b.d1(&format!(
        "SELECT (SELECT status FROM device_codes WHERE device_code_hash = '{d}') AS device, \
         (SELECT ciphertext IS NOT NULL AND confirm_hash IS NOT NULL FROM fetch_tokens \
         WHERE token_hash = '{h}') AS handoff_sealed",
        d = aged[3],
        h = aged[1]
    ));
    assert_eq!(
        what[0]["device"], "approved",
        "an approved, uncollected device login"
    );
    assert_eq!(
        what[0]["handoff_sealed"], 1,
        "a sealed hand-off with its confirmation"
    );
    let before = counts(b, &aged, &kept, now);
    for (table, _) in SHORT_LIVED {
        assert_eq!(before[format!("{table}_aged")], 1, "{table}: {before}");
        assert_eq!(before[format!("{table}_kept")], 1, "{table}: {before}");
    }

    let fired_at = unix_now();
    b.run_scheduled();

    let after = counts(b, &aged, &kept, fired_at);
    for (table, _) in SHORT_LIVED {
        assert_eq!(after[format!("{table}_aged")], 0, "{table} purged: {after}");
        assert_eq!(after[format!("{table}_expired")], 0, "{table}: {after}");
        assert_eq!(after[format!("{table}_kept")], 1, "{table} kept: {after}");
    }
    // One line per run: rows deleted per table (other tests' expired rows
    // too), no failure.
    let line = last_purge_line(b);
    println!("    (the purge's log line: {line})");
    assert_eq!(line["shards"], 1, "{line}");
    assert_eq!(line["failures"], serde_json::json!([]), "{line}");
    for (table, _) in SHORT_LIVED {
        assert!(
            line["deleted"][table].as_u64().is_some_and(|n| n >= 1),
            "{table}: {line}"
        );
    }
}

/// The device's poll at the token endpoint.
fn poll(b: &Broker, device_code: &str) -> Resp {
    token_post(
        b,
        &format!(
            "grant_type={}&device_code={}&client_id=demo",
            enc("urn:ietf:params:oauth:grant-type:device_code"),
            enc(device_code)
        ),
    )
}

fn expired_hand_offs_and_device_logins_are_never_used_before_the_purge(b: &Broker) {
    // A hand-off the user confirmed, and an approved device login: each holds
    // a sealed authid ready to be handed out.
    let (mut popup, token, confirm) = handoff_sealed(b);
    let sent = b.post_form_in(&mut popup, "/handoff", &format!("confirm={confirm}"));
    assert_eq!(sent.status, 200, "{}", sent.body);
    let device_code = device_approved(b, "198.51.100.62");
    // Both expire; the purge has not run.
    let past = unix_now() - 1;
    b.d1(&format!(
        "UPDATE fetch_tokens SET expires_at = {past} WHERE token_hash = '{}'; \
         UPDATE device_codes SET expires_at = {past} WHERE device_code_hash = '{}'",
        token_hash(&token),
        device_code_hash(&device_code)
    ));
    let fetched = b.get(&format!("/fetch?token={token}"));
    assert_eq!(
        fetched.json(),
        serde_json::json!({"error": "No such entry"}),
        "{}",
        fetched.body
    );
    assert_eq!(
        b.get(&format!("/token-state?token={token}")).json(),
        serde_json::json!({"success": false})
    );
    let polled = poll(b, &device_code);
    assert_eq!(polled.status, 400, "{}", polled.body);
    assert_eq!(polled.json()["error"], "expired_token", "{}", polled.body);
    assert!(polled.json().get("refresh_token").is_none());
}

fn the_purge_runs_on_every_shard_and_a_failing_one_stops_no_other(b: &Broker) {
    let state = b.dir.join("purge-shards");
    let _ = std::fs::remove_dir_all(&state);
    let sharded = Broker::start_with(
        &b.mock,
        Options {
            d1_shards: 3,
            state_dir: Some(state),
            ..Options::default()
        },
    );
    // The routes write short-lived rows on shard 1 only; rows on the other
    // shards (same schema) are put there by hand. Shard 2 lags a migration:
    // it has no `device_codes`, so that one statement fails there.
    let (past, future) = (unix_now() - 1, unix_now() + 3600);
    for shard in 1..=3 {
        let mut sql = format!(
            "INSERT INTO login_states (state_hash, provider, binding_hash, token_version, \
             expires_at) VALUES ('expired', 'demo', 'b', 1, {past}), \
             ('kept', 'demo', 'b', 1, {future})"
        );
        if shard == 2 {
            sql.push_str("; DROP TABLE device_codes");
        } else {
            sql.push_str(&format!(
                "; INSERT INTO device_codes (device_code_hash, user_code_hash, provider, status, \
                 poll_interval, expires_at) VALUES ('expired', 'u1', 'demo', 'pending', 5, {past}), \
                 ('kept', 'u2', 'demo', 'pending', 5, {future})"
            ));
        }
        sharded.d1_on(shard, &sql);
    }

    sharded.run_scheduled();

    for shard in 1..=3 {
        let mut sql =
            "SELECT (SELECT group_concat(state_hash) FROM login_states) AS logins".to_string();
        if shard != 2 {
            sql.push_str(", (SELECT group_concat(device_code_hash) FROM device_codes) AS devices");
        }
        let rows = sharded.d1_on(shard, &sql);
        assert_eq!(rows[0]["logins"], "kept", "shard {shard}: {rows}");
        if shard != 2 {
            assert_eq!(rows[0]["devices"], "kept", "shard {shard}: {rows}");
        }
    }
    let line = last_purge_line(&sharded);
    assert_eq!(line["shards"], 3, "{line}");
    assert_eq!(line["deleted"]["login_states"], 3, "{line}");
    assert_eq!(line["deleted"]["device_codes"], 2, "{line}");
    let failures = line["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1, "{line}");
    assert_eq!(failures[0]["shard"], 2, "{line}");
    assert_eq!(failures[0]["table"], "device_codes", "{line}");
}
