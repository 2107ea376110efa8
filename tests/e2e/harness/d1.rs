//! The worker's local D1, read and written beside it through `wrangler d1
//! execute` on the same files, and the tests' own reading of shard names.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{wrangler, Broker, SEALING_SECRET};

/// Runs a local `wrangler d1 …` command (arguments added by `args`) until it
/// succeeds, at most three times. Each run starts its own miniflare, which can fail
/// for reasons of its own (seen once while running this suite: the migration step
/// died on an internal `false == true` assertion), so one failure is not taken as
/// final. Safe for what runs through it: the migrations are `IF NOT EXISTS`, and
/// the tests' statements set values rather than add to them, so repeating one that
/// did run either changes nothing or fails loudly (e.g. a rename).
pub(super) fn wrangler_d1(what: &str, args: impl Fn(&mut Command)) -> std::process::Output {
    three_times(what, || {
        let mut c = wrangler();
        args(&mut c);
        c
    })
}

/// Runs the command `make` builds until it succeeds, at most three times (see
/// [`wrangler_d1`]).
pub(super) fn three_times(what: &str, make: impl Fn() -> Command) -> std::process::Output {
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
