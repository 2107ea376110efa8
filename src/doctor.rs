//! The operator's doctor (`GET /admin/status`, `scripts/doctor.sh`): every
//! problem of the configuration with its fix, decided here from what the
//! shell read (the configuration, the names of the worker's bindings, each
//! shard's migration level); the shell only reads and answers. Never a
//! secret's value: secrets are reported as set or not, and by version.

use serde_json::{json, Value};

use crate::config::Config;
use crate::providers::idle_limit_days;

/// The newest file in `migrations/` (a unit test keeps it so): a shard whose
/// `d1_migrations` ends elsewhere lags behind the code.
pub const LATEST_MIGRATION: &str = "0012_last_ok.sql";

/// The variables and secrets the broker reads, besides each provider's
/// `CLIENT_ID_<ID>` / `CLIENT_SECRET_<ID>` and the D1 bindings of `D1_SHARDS`.
pub const SETTINGS: &[&str] = &[
    "SEALING_SECRET",
    "SEALING_SECRETS_PREVIOUS",
    "OAUTH_PROVIDERS",
    "D1_SHARDS",
    "OPENER_ORIGINS",
    "ACCESS_KEYS",
    "ADMIN_API_KEY",
    "OAUTH_HANDLER_URL",
    "OAUTH_HANDLER_API_KEY",
    "SERVER_TIMING",
    "UPSTREAM_TIMEOUT_MS",
    "UPSTREAM_PATIENCE_MS",
    "REDIRECT_URIS",
    "PRIVACY_CONTACT",
];

/// The `[[ratelimits]]` bindings (`wrangler.toml`): a missing one turns its
/// limit off.
pub const RATE_LIMITS: &[&str] = &[
    "RL_PER_GRANT",
    "RL_PER_IP",
    "RL_V2_PER_IP",
    "RL_USER_CODE",
    "RL_USER_CODE_48",
    "RL_USER_CODE_GLOBAL",
    "RL_MOVE_PER_IP",
    "RL_V2_PER_48",
    "RL_V2_REFUSED",
];

/// A grant counts as idle soon this many days before its provider's limit.
pub const IDLE_WARNING_DAYS: i64 = 14;

/// One group of a shard's live grants, as the shell counted them: provider,
/// status (`active` / `reauth_required`), the day (unix days) of their last
/// write, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantGroup {
    pub shard: usize,
    pub provider: String,
    pub status: String,
    pub day: i64,
    pub count: i64,
}

/// Grants by shard × provider: active, needing re-authorization, and idle
/// past their provider's limit within [`IDLE_WARNING_DAYS`] (counted by the
/// last write of the row, which is the last upstream refresh: a cached
/// access token writes nothing, and it is the refresh token's use that the
/// provider counts). `today`: unix days.
pub fn grant_health(groups: &[GrantGroup], today: i64) -> Value {
    let mut rows: Vec<(usize, String, i64, i64, i64)> = Vec::new();
    for g in groups {
        let limit = idle_limit_days(&g.provider);
        let idle = match (limit, g.status.as_str()) {
            (Some(days), "active") if today - g.day >= days - IDLE_WARNING_DAYS => g.count,
            _ => 0,
        };
        let (active, reauth) = match g.status.as_str() {
            "active" => (g.count, 0),
            _ => (0, g.count),
        };
        match rows
            .iter_mut()
            .find(|(shard, provider, ..)| *shard == g.shard && *provider == g.provider)
        {
            Some(row) => {
                row.2 += active;
                row.3 += reauth;
                row.4 += idle;
            }
            None => rows.push((g.shard, g.provider.clone(), active, reauth, idle)),
        }
    }
    rows.sort();
    Value::Array(
        rows.into_iter()
            .map(|(shard, provider, active, reauth, idle)| {
                let limit = idle_limit_days(&provider);
                json!({
                    "shard": shard,
                    "provider": provider,
                    "active": active,
                    "reauthorization_required": reauth,
                    "idle_soon": idle,
                    "idle_limit_days": limit,
                })
            })
            .collect(),
    )
}

/// Grants whose last upstream refresh was in the last 24 hours, by how it
/// ended: `(provider, outcome, grants)` summed over the shards, as
/// `[{provider, ok, invalid_grant, …}]`. Each grant counts once, by its
/// latest refresh: what the operator asks is which grants are failing now.
pub fn last_refreshes(rows: &[(String, String, i64)]) -> Value {
    let mut by: std::collections::BTreeMap<&str, serde_json::Map<String, Value>> =
        std::collections::BTreeMap::new();
    for (provider, outcome, n) in rows {
        let entry = by.entry(provider.as_str()).or_default();
        let sum = entry.get(outcome).and_then(Value::as_i64).unwrap_or(0) + n;
        entry.insert(outcome.clone(), Value::from(sum));
    }
    Value::Array(
        by.into_iter()
            .map(|(provider, mut outcomes)| {
                outcomes.insert("provider".into(), Value::from(provider));
                Value::Object(outcomes)
            })
            .collect(),
    )
}

/// One shard as the shell found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCheck {
    /// Its D1 binding (`DB`, `DB_2`, …).
    pub binding: String,
    /// `Err`: it could not be read (no such binding, D1 failed), with why.
    /// `Ok(None)`: reachable, no migration applied. `Ok(Some(name))`: the
    /// newest migration applied.
    pub migrated: Result<Option<String>, String>,
}

/// A problem and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub area: &'static str,
    pub what: String,
    pub fix: String,
}

impl Problem {
    fn json(&self) -> Value {
        json!({ "area": self.area, "what": self.what, "fix": self.fix })
    }
}

/// Levenshtein distance, for names of at most a few dozen characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let (Some(&left), Some(&up)) = (row.get(j), row.get(j + 1)) else {
                continue;
            };
            let cost = usize::from(ca != *cb);
            let next = (prev + cost).min(left + 1).min(up + 1);
            prev = up;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = next;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// The known name `name` was most likely meant to be: within 3 edits (and
/// fewer than a third of its length), or the one it extends or shortens
/// (`CLIENT_SECRET_BOX` for `CLIENT_SECRET_BOX_COM`).
pub fn nearest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| {
            let d = match k.starts_with(name) || name.starts_with(k.as_str()) {
                true if name.contains('_') && k.contains('_') => 1,
                _ => distance(name, k),
            };
            (d, k)
        })
        .filter(|(d, _)| *d > 0 && *d <= 3 && *d * 3 < name.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Every name the broker reads under `cfg`.
fn known_names(cfg: &Config) -> Vec<String> {
    let mut known: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
    known.extend(RATE_LIMITS.iter().map(|s| s.to_string()));
    if let Ok(c) = cfg.catalogue() {
        for p in c.all() {
            known.push(p.client_id_binding());
            known.push(p.secret_binding());
        }
    }
    if let Ok(shards) = cfg.shards() {
        known.extend(shards.iter().cloned());
    }
    known
}

/// The diagnosis: `{ok, problems, providers, sealing_secret, shards,
/// rate_limits, gate, opener_origins, …}`. `bindings`: the names of every
/// binding the worker has (vars, secrets, D1, rate limits); `shards`: each
/// shard's check, in `D1_SHARDS` order.
pub fn diagnose(
    cfg: &Config,
    bindings: &[String],
    shards: &[ShardCheck],
    grants: &[GrantGroup],
    refreshed: &[(String, String, i64)],
) -> Value {
    let mut problems: Vec<Problem> = Vec::new();
    let has = |name: &str| bindings.iter().any(|b| b == name);

    // The sealing secrets: set, parsed, by version only.
    let sealing = match cfg.keys() {
        Ok(keys) => json!({
            "set": true,
            "current_version": keys.current_version(),
            "previous_versions": keys.previous_versions(),
        }),
        Err(e) => {
            problems.push(Problem {
                area: "sealing_secret",
                what: format!("SEALING_SECRET is missing or malformed: {}", e.reason()),
                fix: "generate one (`1:$(openssl rand -base64 48)`), keep a copy offline, and \
                      `wrangler secret put SEALING_SECRET` (docs/operate.md)"
                    .into(),
            });
            json!({ "set": false, "current_version": null })
        }
    };

    // Providers: offered or not, and exactly why not.
    let mut providers: Vec<Value> = Vec::new();
    match cfg.catalogue() {
        Ok(catalogue) => {
            for p in catalogue.all() {
                let id_set = !p.client_id.is_empty();
                let secret_set = p.public_client || cfg.has_client_secret(&p.id);
                let offered = id_set && secret_set;
                let mut why: Vec<String> = Vec::new();
                if !id_set {
                    why.push(format!(
                        "no client id ({} in [vars])",
                        p.client_id_binding()
                    ));
                }
                if !secret_set {
                    why.push(format!(
                        "no client secret (wrangler secret put {})",
                        p.secret_binding()
                    ));
                }
                if id_set != secret_set {
                    problems.push(Problem {
                        area: "providers",
                        what: format!(
                            "{}: {} is set but {} is not, so it is not offered",
                            p.id,
                            match id_set {
                                true => p.client_id_binding(),
                                false => p.secret_binding(),
                            },
                            match id_set {
                                true => p.secret_binding(),
                                false => p.client_id_binding(),
                            },
                        ),
                        fix: format!(
                            "set the other one too (docs/providers/), and register the \
                             redirect URI {}",
                            cfg.redirect_uri(&p.id)
                        ),
                    });
                }
                providers.push(json!({
                    "id": p.id,
                    "name": p.name,
                    "offered": offered,
                    "why_not": why,
                    "redirect_uri": cfg.redirect_uri(&p.id),
                }));
            }
        }
        Err(e) => problems.push(Problem {
            area: "providers",
            what: format!("OAUTH_PROVIDERS is not usable: {}", e.reason()),
            fix: "fix the JSON in [vars] (README \"Configuration\"): every URL https".into(),
        }),
    }

    // Bindings that look like a misspelt name the broker reads.
    let known = known_names(cfg);
    let mut unknown: Vec<&String> = bindings.iter().filter(|b| !known.contains(b)).collect();
    unknown.sort();
    for name in unknown {
        match nearest(name, &known) {
            Some(meant) => problems.push(Problem {
                area: "bindings",
                what: format!("{name} is set, but the broker never reads it"),
                fix: format!("rename it to {meant}"),
            }),
            None if name.starts_with("CLIENT_ID_") || name.starts_with("CLIENT_SECRET_") => {
                problems.push(Problem {
                    area: "bindings",
                    what: format!("{name} names no provider this broker knows"),
                    fix: "use the provider's id upper-cased, non-alphanumerics as `_` \
                          (docs/providers/README.md)"
                        .into(),
                })
            }
            None => {}
        }
    }

    // Shards: reachable, and at the newest migration.
    let shard_list: Vec<Value> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (reachable, migration) = match &s.migrated {
                Ok(m) => (true, m.clone()),
                Err(_) => (false, None),
            };
            let lagging = reachable && migration.as_deref() != Some(LATEST_MIGRATION);
            match &s.migrated {
                Err(why) => problems.push(Problem {
                    area: "shards",
                    what: format!("shard {} ({}) cannot be read: {why}", i + 1, s.binding),
                    fix: "check its [[d1_databases]] entry in wrangler.toml".into(),
                }),
                Ok(m) if lagging => problems.push(Problem {
                    area: "shards",
                    what: format!(
                        "shard {} ({}) is at migration {}, the code needs {LATEST_MIGRATION}",
                        i + 1,
                        s.binding,
                        m.as_deref().unwrap_or("none")
                    ),
                    fix: "bash scripts/migrate.sh --remote (docs/operate.md \"Upgrading\")".into(),
                }),
                Ok(_) => {}
            }
            json!({
                "shard": i + 1,
                "binding": s.binding,
                "reachable": reachable,
                "migration": migration,
                "up_to_date": reachable && !lagging,
            })
        })
        .collect();
    if let Err(e) = cfg.shards() {
        problems.push(Problem {
            area: "shards",
            what: format!("D1_SHARDS is not usable: {}", e.reason()),
            fix: "list each D1 binding once, shard 1 first (README \"Add a shard\")".into(),
        });
    }

    // A provider that refused the broker's own client lately: its secret.
    let mut refused: Vec<(&str, i64)> = Vec::new();
    for (provider, outcome, n) in refreshed {
        if outcome == "client_rejected" {
            match refused.iter_mut().find(|(p, _)| p == provider) {
                Some(entry) => entry.1 += n,
                None => refused.push((provider.as_str(), *n)),
            }
        }
    }
    for (provider, n) in refused {
        let names = cfg
            .catalogue()
            .ok()
            .and_then(|c| c.get(provider))
            .map(|p| format!("{} and {}", p.client_id_binding(), p.secret_binding()))
            .unwrap_or_else(|| "its client id and secret".into());
        problems.push(Problem {
            area: "providers",
            what: format!(
                "{provider} refused the broker's client credentials (invalid_client) at the \
                 last refresh of {n} grant(s) in the last 24 hours"
            ),
            fix: format!(
                "check {names} against the provider's console (an expired or rotated secret?)"
            ),
        });
    }

    if let Err(e) = cfg.handler_move_source() {
        problems.push(Problem {
            area: "oauth_handler",
            what: format!("the oauth-handler move is misconfigured: {}", e.reason()),
            fix: "set OAUTH_HANDLER_URL (https) and OAUTH_HANDLER_API_KEY together, or neither"
                .into(),
        });
    }

    let rate_limits: serde_json::Map<String, Value> = RATE_LIMITS
        .iter()
        .map(|name| (name.to_string(), Value::from(has(name))))
        .collect();
    let limits_off: Vec<&str> = RATE_LIMITS.iter().copied().filter(|n| !has(n)).collect();
    let mut warnings: Vec<Value> = Vec::new();
    if !limits_off.is_empty() {
        warnings.push(json!({
            "area": "rate_limits",
            "what": format!("off (no binding): {}", limits_off.join(", ")),
            "fix": "keep the [[ratelimits]] entries of the shipped wrangler.toml",
        }));
    }
    if cfg.opener_origins.allows_any() {
        warnings.push(json!({
            "area": "opener_origins",
            "what": "OPENER_ORIGINS is `*`: any page that opens the broker receives the authid",
            "fix": "list the origins of your Duplicati instances instead (README)",
        }));
    }

    json!({
        "ok": problems.is_empty(),
        "problems": problems.iter().map(Problem::json).collect::<Vec<_>>(),
        "warnings": warnings,
        "sealing_secret": sealing,
        "providers": providers,
        "shards": shard_list,
        "rate_limits": rate_limits,
        "gate": { "enabled": cfg.gate_enabled(), "keys": cfg.gate_key_count() },
        "opener_origins": cfg.opener_origins.describe(),
        "grants": grant_health(grants, cfg.now.div_euclid(86_400)),
        "last_refresh_24h": last_refreshes(refreshed),
        "observability": "wrangler.toml ships [observability.logs] invocation_logs = false \
                          (not visible from inside the worker; SECURITY.md \"What is logged\")",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &'static [(&'static str, &'static str)]) -> Config {
        Config::from_bindings(
            move |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            },
            "https://broker.example".into(),
            1_700_000_000,
        )
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn problems(v: &Value) -> Vec<String> {
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{} -> {}", p["what"], p["fix"]))
            .collect()
    }

    #[test]
    fn the_latest_migration_is_the_newest_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let newest = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .max()
            .unwrap();
        assert_eq!(newest, LATEST_MIGRATION);
    }

    #[test]
    fn grants_are_counted_by_shard_and_provider_with_those_near_their_idle_limit() {
        let g = |shard, provider: &str, status: &str, day, count| GrantGroup {
            shard,
            provider: provider.into(),
            status: status.into(),
            day,
            count,
        };
        let today = 20_000;
        let v = grant_health(
            &[
                g(1, "box.com", "active", today, 3),
                g(1, "box.com", "active", today - 46, 2),
                g(1, "box.com", "active", today - 45, 1),
                g(1, "box.com", "reauth_required", today - 300, 4),
                g(2, "box.com", "active", today - 100, 1),
                g(1, "dropbox", "active", today - 1000, 5),
            ],
            today,
        );
        assert_eq!(
            v,
            json!([
                {"shard": 1, "provider": "box.com", "active": 6, "reauthorization_required": 4,
                 "idle_soon": 2, "idle_limit_days": 60},
                {"shard": 1, "provider": "dropbox", "active": 5, "reauthorization_required": 0,
                 "idle_soon": 0, "idle_limit_days": null},
                {"shard": 2, "provider": "box.com", "active": 1, "reauthorization_required": 0,
                 "idle_soon": 1, "idle_limit_days": 60},
            ])
        );
    }

    #[test]
    fn a_provider_refusing_the_client_is_a_problem_naming_its_bindings() {
        let c = cfg(&[
            ("SEALING_SECRET", "1:0123456789abcdef0123456789abcdef0123"),
            ("CLIENT_ID_DROPBOX", "abc"),
            ("CLIENT_SECRET_DROPBOX", "s3cr3t-value"),
        ]);
        let refreshed = [
            ("dropbox".to_string(), "client_rejected".to_string(), 2),
            ("dropbox".to_string(), "ok".to_string(), 5),
        ];
        let v = diagnose(&c, &[], &[], &[], &refreshed);
        let p = problems(&v).join("\n");
        assert!(
            p.contains("dropbox refused the broker's client credentials"),
            "{p}"
        );
        assert!(p.contains("2 grant(s)"), "{p}");
        assert!(
            p.contains("CLIENT_ID_DROPBOX and CLIENT_SECRET_DROPBOX"),
            "{p}"
        );
    }

    #[test]
    fn the_last_refreshes_are_summed_over_shards_by_provider_and_outcome() {
        let r = |p: &str, o: &str, n| (p.to_string(), o.to_string(), n);
        let v = last_refreshes(&[
            r("box.com", "ok", 3),
            r("box.com", "invalid_grant", 1),
            r("box.com", "ok", 2),
            r("dropbox", "timeout", 1),
        ]);
        assert_eq!(
            v,
            json!([
                {"provider": "box.com", "ok": 5, "invalid_grant": 1},
                {"provider": "dropbox", "timeout": 1},
            ])
        );
    }

    #[test]
    fn nearest_names_the_binding_meant() {
        let known = names(&[
            "CLIENT_SECRET_BOX_COM",
            "CLIENT_SECRET_DROPBOX",
            "SEALING_SECRET",
        ]);
        assert_eq!(
            nearest("CLIENT_SECRET_BOX", &known),
            Some("CLIENT_SECRET_BOX_COM")
        );
        assert_eq!(
            nearest("CLIENT_SECRET_DROPBOXX", &known),
            Some("CLIENT_SECRET_DROPBOX")
        );
        assert_eq!(nearest("SEALING_SECRETS", &known), Some("SEALING_SECRET"));
        assert_eq!(nearest("SEALNG_SECRET", &known), Some("SEALING_SECRET"));
        assert_eq!(nearest("MY_OWN_THING", &known), None);
        assert_eq!(nearest("DB", &known), None);
    }

    #[test]
    fn a_healthy_configuration_has_no_problem() {
        let c = cfg(&[
            ("SEALING_SECRET", "1:0123456789abcdef0123456789abcdef0123"),
            ("CLIENT_ID_DROPBOX", "abc"),
            ("CLIENT_SECRET_DROPBOX", "s3cr3t-value"),
        ]);
        let mut b = names(&[
            "SEALING_SECRET",
            "CLIENT_ID_DROPBOX",
            "CLIENT_SECRET_DROPBOX",
            "DB",
        ]);
        b.extend(RATE_LIMITS.iter().map(|s| s.to_string()));
        let shards = [ShardCheck {
            binding: "DB".into(),
            migrated: Ok(Some(LATEST_MIGRATION.into())),
        }];
        let v = diagnose(&c, &b, &shards, &[], &[]);
        assert_eq!(v["ok"], true, "{:?}", problems(&v));
        assert_eq!(v["warnings"], json!([]));
        let dropbox = v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "dropbox")
            .unwrap();
        assert_eq!(dropbox["offered"], true);
        assert_eq!(
            dropbox["redirect_uri"],
            "https://broker.example/callback/dropbox"
        );
        // No secret's value anywhere.
        let text = v.to_string();
        assert!(!text.contains("s3cr3t-value") && !text.contains("0123456789abcdef"));
    }

    #[test]
    fn each_planted_fault_is_named_with_its_fix() {
        let c = cfg(&[
            ("CLIENT_ID_DROPBOX", "abc"),
            ("CLIENT_SECRET_BOX", "s3cr3t-value"),
        ]);
        let b = names(&["CLIENT_ID_DROPBOX", "CLIENT_SECRET_BOX", "DB"]);
        let shards = [ShardCheck {
            binding: "DB".into(),
            migrated: Ok(Some("0010_claims.sql".into())),
        }];
        let v = diagnose(&c, &b, &shards, &[], &[]);
        assert_eq!(v["ok"], false);
        let p = problems(&v).join("\n");
        assert!(p.contains("SEALING_SECRET is missing"), "{p}");
        assert!(
            p.contains("CLIENT_ID_DROPBOX is set but CLIENT_SECRET_DROPBOX is not"),
            "{p}"
        );
        assert!(
            p.contains("CLIENT_SECRET_BOX is set, but the broker never reads it"),
            "{p}"
        );
        assert!(p.contains("rename it to CLIENT_SECRET_BOX_COM"), "{p}");
        assert!(p.contains("is at migration 0010_claims.sql"), "{p}");
        assert!(p.contains("scripts/migrate.sh --remote"), "{p}");
        assert!(v["warnings"].to_string().contains("RL_PER_GRANT"));
        assert!(!v.to_string().contains("s3cr3t-value"));
    }
}
