//! Issue 15 item 2: grants sharded over several D1 databases (the contract is
//! docs/scale.md "Sharding"). `D1_SHARDS` lists the bindings (`DB DB_2 DB_3`);
//! a grant minted on shard k >= 2 is spelled `s<k>:<32hex>:<43 b64url>`, one on
//! shard 1 exactly as before sharding, so a lookup reads the shard from the
//! authid. These tests start their own brokers with local D1 shards (one
//! SQLite file each, migrated by scripts/migrate.sh) and count rows in each
//! database (`Broker::d1_on`), so every claim about "where the row is" is
//! checked in the database itself, not through the broker.
//!
//! Every refresh here is a cache miss: the mock issues 60 s tokens (at the
//! broker's 60 s floor), so each refresh goes upstream once and writes the
//! rotated refresh token (the mock's default single-use rotation) back to the
//! grant's own shard; a rotation written to the wrong database would show up
//! as a spent refresh token presented again (`spent_refresh_reuse`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::scale::d1_work;
use oauth_broker::authid::AuthId;
use oauth_broker::ids::Shard;

use crate::harness::{request, shard_of, Broker, Options, Resp, ADMIN_API_KEY};
use crate::Test;

pub const TESTS: &[Test] = &[
    (
        "grants_minted_on_three_shards_spread_over_all_three_and_each_works_on_its_own",
        grants_minted_on_three_shards_spread_over_all_three_and_each_works_on_its_own,
    ),
    (
        "a_pre_sharding_authid_keeps_working_after_the_broker_gains_shards",
        a_pre_sharding_authid_keeps_working_after_the_broker_gains_shards,
    ),
    (
        "adding_a_shard_to_a_running_deployment_breaks_no_grant",
        adding_a_shard_to_a_running_deployment_breaks_no_grant,
    ),
    (
        "a_tag_naming_an_unconfigured_shard_is_unknown_and_a_malformed_tag_is_malformed",
        a_tag_naming_an_unconfigured_shard_is_unknown_and_a_malformed_tag_is_malformed,
    ),
    (
        "server_timing_counts_a_shard_2_grant_like_any_other",
        server_timing_counts_a_shard_2_grant_like_any_other,
    ),
];

/// A broker with `shards` D1 shards on the local D1 in `state` (kept across
/// restarts), `SERVER_TIMING=1`.
fn start(b: &Broker, shards: usize, state: &Path) -> Broker {
    Broker::start_with(
        &b.mock,
        Options {
            d1_shards: shards,
            state_dir: Some(state.to_path_buf()),
            extra_vars: vec![("SERVER_TIMING".into(), "1".into())],
            ..Options::default()
        },
    )
}

/// A fresh state directory for one test's brokers.
fn fresh_state(b: &Broker, name: &str) -> PathBuf {
    let state = b.dir.join(name);
    let _ = std::fs::remove_dir_all(&state);
    state
}

/// From now on the mock issues 60 s access tokens: every refresh is a miss.
fn every_refresh_goes_upstream(b: &Broker) {
    let mut cfg = b.mock.config();
    cfg.access_token_ttl = 60;
    b.mock.set_config(cfg);
}

/// The key hash of `authid`'s row (the tag only routes: the hash is the
/// untagged authid's).
fn key_hash(authid: &str) -> String {
    crate::core_flow::key_hash(shard_of(authid).1)
}

/// The key hashes stored on shard `k`.
fn hashes_on(w: &Broker, k: usize) -> BTreeSet<String> {
    w.d1_on(k, "SELECT key_hash FROM grants")
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["key_hash"].as_str().expect("key_hash").to_string())
        .collect()
}

/// Every shard's key hashes, shard 1 first.
fn all_hashes(w: &Broker) -> Vec<BTreeSet<String>> {
    (1..=w.shards).map(|k| hashes_on(w, k)).collect()
}

/// The shards (1-based) holding `authid`'s row.
fn shards_holding(hashes: &[BTreeSet<String>], authid: &str) -> Vec<usize> {
    let kh = key_hash(authid);
    (1..=hashes.len())
        .filter(|k| hashes[k - 1].contains(&kh))
        .collect()
}

/// Logs in at least `min` times and until every shard in `want` has received
/// a grant (by the authids' tags), at most `max` times (uniform choice: the
/// chance that 40 logins miss one of three shards is 3·(2/3)^40 < 10^-6).
fn mint_until(w: &Broker, min: usize, max: usize, want: &[usize]) -> Vec<String> {
    let mut authids = Vec::new();
    while authids.len() < min
        || !want
            .iter()
            .all(|k| authids.iter().any(|a: &String| shard_of(a).0 == *k))
    {
        assert!(
            authids.len() < max,
            "{max} logins and shards {want:?} did not all receive a grant: {:?}",
            authids.iter().map(|a| shard_of(a).0).collect::<Vec<_>>()
        );
        authids.push(w.login());
    }
    authids
}

fn refresh_ok(w: &Broker, authid: &str) -> Resp {
    let r = w.refresh(authid);
    assert_eq!(
        r.status,
        200,
        "refresh on shard {}: {}",
        shard_of(authid).0,
        r.body
    );
    assert!(r.json()["access_token"].is_string(), "{}", r.body);
    r
}

/// Refreshes every grant once: each one upstream call and one successful
/// rotation, no spent refresh token presented again.
fn each_refreshes_upstream_once(b: &Broker, w: &Broker, authids: &[String]) {
    b.mock.reset_stats();
    for a in authids {
        let before = b.mock.stats().refresh_calls;
        refresh_ok(w, a);
        assert_eq!(
            b.mock.stats().refresh_calls,
            before + 1,
            "a grant on shard {} refreshed upstream once",
            shard_of(a).0
        );
    }
    let s = b.mock.stats();
    assert_eq!(s.refresh_successes, authids.len() as u64);
    assert_eq!(s.spent_refresh_reuse, 0, "a rotation was lost");
}

fn revoke(w: &Broker, authid: &str) {
    let enc: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
    let r = w.post_form("/revoked", &format!("authid={enc}"));
    assert_eq!(r.status, 200, "revoke: {}", r.body);
}

fn export(w: &Broker, authid: &str) -> Resp {
    w.get_with(
        "/export",
        &[("X-APIKey", ADMIN_API_KEY), ("X-AuthID", authid)],
    )
}

fn import(w: &Broker, authid: Option<&str>, body: &str) -> Resp {
    let mut h = vec![
        ("X-APIKey", ADMIN_API_KEY),
        ("Content-Type", "application/json"),
    ];
    if let Some(a) = authid {
        h.push(("X-AuthID", a));
    }
    request("POST", &w.url("/import"), &h, Some(body))
}

/// A fresh authid of ours, tagged for shard `k` (untagged for 1).
fn fresh_authid_on(k: usize) -> String {
    let a = AuthId::generate(Shard::FIRST).expect("CSPRNG").expose();
    if k == 1 {
        a
    } else {
        format!("s{k}:{a}")
    }
}

/// No authid (nor its secret) in the worker's log.
fn assert_log_clean(w: &Broker, authids: &[String]) {
    let log = w.log_text();
    for a in authids {
        let secret = a.rsplit(':').next().unwrap_or(a);
        assert!(!log.contains(secret), "an authid's secret is in the log");
    }
}

fn grants_minted_on_three_shards_spread_over_all_three_and_each_works_on_its_own(b: &Broker) {
    let state = fresh_state(b, "shards-spread");
    let w = start(b, 3, &state);
    every_refresh_goes_upstream(b);
    let authids = mint_until(&w, 12, 40, &[1, 2, 3]);

    // Where the rows are: each where its tag says (untagged = shard 1), on no
    // other shard, and every shard has some.
    let hashes = all_hashes(&w);
    for a in &authids {
        assert!(!a.starts_with("s1:"), "shard 1 is never tagged");
        assert_eq!(
            shards_holding(&hashes, a),
            [shard_of(a).0],
            "the row is on the shard its tag names, only there"
        );
    }
    for (i, h) in hashes.iter().enumerate() {
        let tagged = authids.iter().filter(|a| shard_of(a).0 == i + 1).count();
        assert!(tagged >= 1, "shard {} got no grant", i + 1);
        assert_eq!(h.len(), tagged, "shard {} holds exactly its grants", i + 1);
    }

    // Each refreshes upstream (a cache miss) and writes its rotation back to
    // its own shard; a second round proves the rotations were stored.
    each_refreshes_upstream_once(b, &w, &authids);
    each_refreshes_upstream_once(b, &w, &authids);

    // Revoke one grant per shard: its row leaves its shard, the others' rows stay.
    let victims: Vec<String> = (1..=3)
        .map(|k| {
            authids
                .iter()
                .find(|a| shard_of(a).0 == k)
                .expect("one per shard")
                .clone()
        })
        .collect();
    for v in &victims {
        revoke(&w, v);
        let gone = w.refresh(v);
        assert_eq!(gone.status, 401, "{}", gone.body);
        assert_eq!(gone.json()["error"], "unknown_authid");
    }
    let after = all_hashes(&w);
    for k in 1..=3 {
        let mut want = hashes[k - 1].clone();
        want.remove(&key_hash(&victims[k - 1]));
        assert_eq!(after[k - 1], want, "shard {k} lost exactly its revoked row");
    }

    // Export a grant from shard 3 and import it onto shard 2 under a tagged
    // X-AuthID; it lands there and refreshes.
    let from3 = authids
        .iter()
        .find(|a| shard_of(a).0 == 3 && !victims.contains(a))
        .unwrap_or(&victims[2]);
    let from3 = if victims.contains(from3) {
        // Shard 3 had only the revoked grant: mint another there.
        mint_until(&w, 0, 40, &[3])
            .into_iter()
            .find(|a| shard_of(a).0 == 3)
            .expect("a shard-3 grant")
    } else {
        from3.clone()
    };
    let exported = export(&w, &from3);
    assert_eq!(
        exported.status, 200,
        "export from shard 3: {}",
        exported.body
    );
    assert!(exported.json()["refresh_token"].is_string());
    let copy = fresh_authid_on(2);
    let r = import(&w, Some(&copy), &exported.body);
    assert_eq!(r.status, 200, "import onto shard 2: {}", r.body);
    assert_eq!(r.json()["imported"], true);
    assert!(r.json().get("authid").is_none(), "the given authid is kept");
    let now = all_hashes(&w);
    assert_eq!(shards_holding(&now, &copy), [2], "imported onto shard 2");
    assert_eq!(
        export(&w, &copy).json()["refresh_token"],
        exported.json()["refresh_token"],
        "the same grant"
    );
    // The copy refreshes upstream and its rotation is stored on shard 2. (The
    // original is left alone from now on: it holds the same refresh token,
    // which the copy's first refresh spends; revoking it would revoke that
    // token at the provider.)
    b.mock.reset_stats();
    refresh_ok(&w, &copy);
    refresh_ok(&w, &copy);
    assert_eq!(b.mock.stats().refresh_successes, 2);
    assert_eq!(b.mock.stats().spent_refresh_reuse, 0);

    // Import without an X-AuthID mints an authid: its row is where its tag says.
    let other = authids
        .iter()
        .find(|a| !victims.contains(a) && **a != from3)
        .expect("a grant left");
    let exported = export(&w, other);
    assert_eq!(exported.status, 200, "{}", exported.body);
    let r = import(&w, None, &exported.body);
    assert_eq!(r.status, 200, "{}", r.body);
    let minted = r.json()["authid"]
        .as_str()
        .expect("minted authid")
        .to_string();
    w.remember(&minted);
    assert_eq!(
        shards_holding(&all_hashes(&w), &minted),
        [shard_of(&minted).0],
        "a minted import lands where its tag says"
    );
    b.mock.reset_stats();
    refresh_ok(&w, &minted);
    assert_eq!(b.mock.stats().refresh_successes, 1);

    let mut seen = authids.clone();
    seen.extend([copy, minted]);
    assert_log_clean(&w, &seen);
    b.reset_mock();
}

fn a_pre_sharding_authid_keeps_working_after_the_broker_gains_shards(b: &Broker) {
    let state = fresh_state(b, "shards-pre");
    every_refresh_goes_upstream(b);
    // Before sharding: one database, today's spelling.
    let w = start(b, 1, &state);
    let old: Vec<String> = (0..3).map(|_| w.login()).collect();
    for a in &old {
        assert_eq!(
            shard_of(a),
            (1, a.as_str()),
            "a 1-shard broker tags nothing"
        );
    }
    each_refreshes_upstream_once(b, &w, &old);
    drop(w);

    // The same database is shard 1 of a 3-shard broker.
    let w = start(b, 3, &state);
    let hashes = all_hashes(&w);
    for a in &old {
        assert_eq!(shards_holding(&hashes, a), [1], "nothing moved");
    }
    assert!(hashes[1].is_empty() && hashes[2].is_empty());
    each_refreshes_upstream_once(b, &w, &old);
    let exported = export(&w, &old[0]);
    assert_eq!(
        exported.status, 200,
        "export of an old grant: {}",
        exported.body
    );
    assert!(exported.json()["refresh_token"].is_string());
    revoke(&w, &old[1]);
    assert_eq!(w.refresh(&old[1]).status, 401, "revoked");
    let after = all_hashes(&w);
    assert!(
        !after[0].contains(&key_hash(&old[1])),
        "its row left shard 1"
    );
    assert!(after[0].contains(&key_hash(&old[0])), "the others stay");
    assert_eq!(w.refresh(&old[2]).status, 200);

    // New grants spread over all three.
    let new = mint_until(&w, 3, 40, &[1, 2, 3]);
    let hashes = all_hashes(&w);
    for a in &new {
        assert_eq!(shards_holding(&hashes, a), [shard_of(a).0]);
    }
    each_refreshes_upstream_once(b, &w, &new);
    let mut seen = old.clone();
    seen.extend(new);
    assert_log_clean(&w, &seen);
    b.reset_mock();
}

fn adding_a_shard_to_a_running_deployment_breaks_no_grant(b: &Broker) {
    let state = fresh_state(b, "shards-add");
    every_refresh_goes_upstream(b);
    let w = start(b, 2, &state);
    let old = mint_until(&w, 4, 40, &[1, 2]);
    assert!(
        old.iter().all(|a| shard_of(a).0 <= 2),
        "a 2-shard broker mints on shards 1 and 2 only"
    );
    // Rotate every grant once on the 2-shard broker.
    each_refreshes_upstream_once(b, &w, &old);
    drop(w);

    // D1_SHARDS gains DB_3 (appended), the new database is migrated, restart.
    let w = start(b, 3, &state);
    let hashes = all_hashes(&w);
    assert!(hashes[2].is_empty(), "the new shard starts empty");
    for a in &old {
        assert_eq!(shards_holding(&hashes, a), [shard_of(a).0], "nothing moved");
    }
    // Every old grant refreshes with the refresh token its last rotation stored.
    each_refreshes_upstream_once(b, &w, &old);
    // New grants reach the new shard, and work there.
    let new = mint_until(&w, 1, 40, &[3]);
    let on3: Vec<String> = new.iter().filter(|a| shard_of(a).0 == 3).cloned().collect();
    assert_eq!(
        hashes_on(&w, 3),
        on3.iter().map(|a| key_hash(a)).collect::<BTreeSet<_>>()
    );
    each_refreshes_upstream_once(b, &w, &new);
    let mut seen = old.clone();
    seen.extend(new);
    assert_log_clean(&w, &seen);
    b.reset_mock();
}

fn a_tag_naming_an_unconfigured_shard_is_unknown_and_a_malformed_tag_is_malformed(b: &Broker) {
    // The suite's broker has one shard: `DB`.
    let authid = b.login();
    let exported = export(b, &authid);
    assert_eq!(exported.status, 200, "{}", exported.body);

    let stranger = fresh_authid_on(1);
    let unknown = b.refresh(&stranger);
    assert_eq!(unknown.json()["error"], "unknown_authid");
    let unknown_export = export(b, &stranger);
    assert_eq!(unknown_export.json()["error"], "unknown_authid");
    for k in [2, 3, 999] {
        let tagged = fresh_authid_on(k);
        b.remember(&tagged);
        // Refreshing names a shard that is not there: an unknown authid.
        let r = b.refresh(&tagged);
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (unknown.status, unknown.json()["error"].clone()),
            "shard {k}: {}",
            r.body
        );
        assert!(r.header("X-Reason").is_some_and(|x| !x.is_empty()));
        let r = export(b, &tagged);
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (
                unknown_export.status,
                unknown_export.json()["error"].clone()
            ),
            "export, shard {k}: {}",
            r.body
        );
        // Importing onto it cannot store anything: 400 unknown_shard.
        let r = import(b, Some(&tagged), &exported.body);
        assert_eq!(r.status, 400, "import onto shard {k}: {}", r.body);
        assert_eq!(r.json()["error"], "unknown_shard");
    }

    // Malformed tags answer exactly like a malformed authid.
    let garbage = b.refresh("not-an-authid");
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    let garbage_import = import(b, Some("not-an-authid"), &exported.body);
    assert_eq!(garbage_import.status, 400, "{}", garbage_import.body);
    let plain = fresh_authid_on(1);
    for tag in ["s1:", "s0:", "s01:", "s02:", "s:", "s1000:", "S2:", "s2s:"] {
        let bad = format!("{tag}{plain}");
        let r = b.refresh(&bad);
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (garbage.status, garbage.json()["error"].clone()),
            "refresh with tag {tag}: {}",
            r.body
        );
        let r = import(b, Some(&bad), &exported.body);
        assert_eq!(
            (r.status, r.json()["error"].clone()),
            (
                garbage_import.status,
                garbage_import.json()["error"].clone()
            ),
            "import with tag {tag}: {}",
            r.body
        );
    }
    // None of it stored anything or hurt the real grant.
    assert_eq!(b.refresh(&authid).status, 200);
    let log = b.log_text();
    assert!(!log.contains(shard_of(&plain).1.rsplit(':').next().unwrap_or("x")));
}

fn server_timing_counts_a_shard_2_grant_like_any_other(b: &Broker) {
    let state = fresh_state(b, "shards-timing");
    let w = start(b, 2, &state);
    let on2 = mint_until(&w, 1, 40, &[2])
        .into_iter()
        .find(|a| shard_of(a).0 == 2)
        .expect("a shard-2 grant");
    let hit = refresh_ok(&w, &on2);
    assert_eq!(
        d1_work(&hit),
        (1, 0, 0),
        "a cache hit on shard 2: one replica read of shard 2, nothing else"
    );
    w.expire_access_token(&on2);
    b.mock.reset_stats();
    let miss = refresh_ok(&w, &on2);
    assert_eq!(
        d1_work(&miss),
        (1, 2, 2),
        "a miss on shard 2: replica read, claim, write"
    );
    assert_eq!(b.mock.stats().refresh_calls, 1);
    assert_eq!(d1_work(&refresh_ok(&w, &on2)), (1, 0, 0), "a hit again");
    assert_log_clean(&w, &[on2]);
}
