//! The broker's configuration for one request, built once from the Worker's
//! bindings (vars and secrets) and the request's origin and clock.
//!
//! The shell hands in a lookup function (`env.var(name)` there, a map in the
//! tests), so every parsing and defaulting rule here is plain Rust, tested
//! natively. Each part is built at most once per request, the costly ones (the
//! provider catalogue with its secrets, the HKDF-derived server keys) only when
//! a handler first needs them.
//! A broken setting fails only the routes that need it (a bad `SEALING_SECRET`
//! does not take down the provider list), with a 500 `server_misconfigured`.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use crate::access;
use crate::error::BrokerError;
use crate::handler_move;
use crate::ids::Shard;
use crate::opener::OpenerOrigins;
use crate::providers::{Catalogue, Provider};
use crate::refresh;
use crate::seal::ServerKeys;
use crate::secret::{ct_eq, ClientSecret};

/// One request's view of the configuration.
pub struct Config {
    /// The broker's own origin (`https://broker.example`), for redirect URIs and links.
    pub origin: String,
    /// The request's clock, unix seconds: every decision in one request sees one `now`.
    pub now: i64,
    /// How long a client waits for one upstream call ([`refresh::upstream_timeout_ms`]).
    pub upstream_timeout_ms: u64,
    /// How long the broker waits for a provider's answer to a refresh it
    /// started, after the client stopped waiting ([`refresh::upstream_patience_ms`]).
    pub upstream_patience_ms: u64,
    /// Origins the result page may post the authid to (`crate::opener`;
    /// by default any loopback origin on any port).
    pub opener_origins: OpenerOrigins,
    /// `SERVER_TIMING=1`: answers report their D1 work (`crate::d1work`).
    pub server_timing: bool,
    /// The D1 bindings grants are sharded over (`D1_SHARDS`, [`parse_shards`]).
    shards: Result<Vec<String>, BrokerError>,
    /// The operator's access gate (`ACCESS_KEYS`); empty = open.
    access_keys: Vec<String>,
    /// `ADMIN_API_KEY`: enables export/import.
    admin_key: Option<ClientSecret>,
    /// `PRIVACY_CONTACT`: who runs the broker, for `/privacy` (off when unset).
    pub privacy_contact: Option<String>,
    /// The bindings, for the parts built on first use: most requests (a
    /// cache-hit refresh, `/healthz`) need neither the provider catalogue nor,
    /// some, the server keys, and building them costs a JSON parse, a dozen
    /// binding reads and several HKDF derivations.
    binding: Box<Lookup>,
    providers: OnceCell<Result<Providers, BrokerError>>,
    /// Shared (not copied) with work that outlives the request.
    keys: OnceCell<Result<Rc<ServerKeys>, BrokerError>>,
    handler_move: OnceCell<Result<Option<Rc<handler_move::Source>>, BrokerError>>,
}

thread_local! {
    /// The server keys last derived on this thread, with the settings they
    /// were derived from. A Workers isolate runs one thread and serves many
    /// requests with the same secrets: deriving them (base64 and several HKDF
    /// expansions per secret) once per isolate instead of once per request
    /// protects nothing less, since the secrets are in the isolate's memory
    /// either way. Changed settings (a rotation) are derived afresh.
    static DERIVED: RefCell<Option<Derived>> = const { RefCell::new(None) };
}

/// `SEALING_SECRET`, `SEALING_SECRETS_PREVIOUS`, and the keys derived from them.
type Derived = (String, Option<String>, Rc<ServerKeys>);

/// The server keys for `SEALING_SECRET` = `current` and
/// `SEALING_SECRETS_PREVIOUS` = `previous`, derived once per isolate.
fn derived_keys(current: &str, previous: Option<&str>) -> Result<Rc<ServerKeys>, BrokerError> {
    let cached = DERIVED.with_borrow(|d| {
        d.as_ref()
            .filter(|(c, p, _)| c == current && p.as_deref() == previous)
            .map(|(_, _, keys)| keys.clone())
    });
    if let Some(keys) = cached {
        return Ok(keys);
    }
    let keys = Rc::new(ServerKeys::parse(current, previous)?);
    DERIVED.set(Some((
        current.to_string(),
        previous.map(str::to_string),
        keys.clone(),
    )));
    Ok(keys)
}

/// Reads a binding (var or secret) by name.
type Lookup = dyn Fn(&str) -> Option<String>;

/// The catalogue and the client secrets bound for it.
struct Providers {
    catalogue: Catalogue,
    /// Client secrets of the providers that have one bound, by provider id.
    client_secrets: Vec<(String, ClientSecret)>,
}

/// A binding's value; blank counts as unset.
fn nonblank(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("origin", &self.origin)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads every setting through `binding` (a var or secret by name; blank
    /// counts as unset).
    pub fn from_bindings(
        binding: impl Fn(&str) -> Option<String> + 'static,
        origin: String,
        now: i64,
    ) -> Config {
        let get = |name: &str| nonblank(binding(name));
        let upstream_timeout_ms =
            refresh::upstream_timeout_ms(get("UPSTREAM_TIMEOUT_MS").as_deref());
        Config {
            origin,
            now,
            upstream_timeout_ms,
            upstream_patience_ms: refresh::upstream_patience_ms(
                get("UPSTREAM_PATIENCE_MS").as_deref(),
                upstream_timeout_ms,
            ),
            opener_origins: OpenerOrigins::parse(get("OPENER_ORIGINS").as_deref()),
            server_timing: crate::d1work::enabled(get("SERVER_TIMING").as_deref()),
            shards: parse_shards(get("D1_SHARDS").as_deref()),
            access_keys: access::parse_keys(get("ACCESS_KEYS").as_deref()),
            admin_key: get("ADMIN_API_KEY").map(ClientSecret::new),
            privacy_contact: get("PRIVACY_CONTACT"),
            binding: Box::new(binding),
            providers: OnceCell::new(),
            keys: OnceCell::new(),
            handler_move: OnceCell::new(),
        }
    }

    /// The oauth-handler grants move from (`crate::handler_move`), if the operator
    /// set one: `OAUTH_HANDLER_URL` and `OAUTH_HANDLER_API_KEY`.
    pub fn handler_move_source(&self) -> Result<Option<Rc<handler_move::Source>>, BrokerError> {
        self.handler_move
            .get_or_init(|| {
                let get = |name: &str| nonblank((self.binding)(name));
                handler_move::Source::from_settings(
                    get("OAUTH_HANDLER_URL").as_deref(),
                    get("OAUTH_HANDLER_API_KEY").as_deref(),
                )
                .map(|s| s.map(Rc::new))
            })
            .clone()
    }

    fn get(&self, name: &str) -> Option<String> {
        nonblank((self.binding)(name))
    }

    fn providers(&self) -> Result<&Providers, BrokerError> {
        self.providers
            .get_or_init(|| {
                let catalogue = Catalogue::load(self.get("OAUTH_PROVIDERS").as_deref())?
                    .with_client_ids(|name| self.get(name));
                let client_secrets = catalogue
                    .all()
                    .iter()
                    .filter_map(|p| {
                        self.get(&p.secret_binding())
                            .map(|s| (p.id.clone(), ClientSecret::new(s)))
                    })
                    .collect();
                Ok(Providers {
                    catalogue,
                    client_secrets,
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The provider catalogue (`OAUTH_PROVIDERS` applied).
    pub fn catalogue(&self) -> Result<&Catalogue, BrokerError> {
        Ok(&self.providers()?.catalogue)
    }

    /// The providers a user may log in with: client id and client secret set
    /// (a public client needs no secret).
    pub fn offered(&self) -> Result<Vec<&Provider>, BrokerError> {
        Ok(self
            .catalogue()?
            .all()
            .iter()
            .filter(|p| self.usable(p))
            .collect())
    }

    fn usable(&self, p: &Provider) -> bool {
        !p.client_id.is_empty() && (p.public_client || self.client_secret(&p.id).is_some())
    }

    /// Whether a client secret is bound for `provider_id` (the doctor).
    pub fn has_client_secret(&self, provider_id: &str) -> bool {
        self.client_secret(provider_id).is_some()
    }

    /// Whether the access gate is on, and with how many keys (never which).
    pub fn gate_enabled(&self) -> bool {
        !self.access_keys.is_empty()
    }

    pub fn gate_key_count(&self) -> usize {
        self.access_keys.len()
    }

    fn client_secret(&self, provider_id: &str) -> Option<&ClientSecret> {
        self.providers()
            .ok()?
            .client_secrets
            .iter()
            .find(|(id, _)| id == provider_id)
            .map(|(_, s)| s)
    }

    /// A provider a user may log in with (by id or alias) and its client
    /// secret; `None` for a public client, which has none (and sends none).
    pub fn provider(&self, id: &str) -> Result<(&Provider, Option<&ClientSecret>), BrokerError> {
        let p = self
            .catalogue()?
            .get(id)
            .filter(|p| self.usable(p))
            .ok_or(BrokerError::UnknownProvider)?;
        if p.public_client {
            return Ok((p, None));
        }
        let secret = self
            .client_secret(&p.id)
            .ok_or(BrokerError::UnknownProvider)?;
        Ok((p, Some(secret)))
    }

    /// The server keys (`SEALING_SECRET` + `SEALING_SECRETS_PREVIOUS`), derived once.
    pub fn keys(&self) -> Result<&Rc<ServerKeys>, BrokerError> {
        self.keys
            .get_or_init(|| match self.get("SEALING_SECRET") {
                None => Err(BrokerError::Misconfigured {
                    what: "SEALING_SECRET is not set",
                }),
                Some(current) => {
                    derived_keys(&current, self.get("SEALING_SECRETS_PREVIOUS").as_deref())
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The D1 bindings of the shards, shard 1 first (a broken `D1_SHARDS`:
    /// misconfigured, for every route that touches D1).
    pub fn shards(&self) -> Result<&[String], BrokerError> {
        self.shards.as_deref().map_err(Clone::clone)
    }

    /// The D1 binding of `shard`, or `None` when the configuration has no
    /// such shard (an authid naming it answers like an unknown one).
    pub fn shard_binding(&self, shard: Shard) -> Result<Option<&str>, BrokerError> {
        Ok(self.shards()?.get(shard.index()).map(String::as_str))
    }

    /// Where a new grant goes: a shard drawn uniformly from all configured ones.
    pub fn shard_for_new_grant(&self) -> Result<Shard, BrokerError> {
        Ok(pick(self.shards()?.len(), crate::random::u32()?))
    }

    /// Whether a request presenting `key` passes the operator's access gate.
    pub fn gate_allows(&self, key: Option<&str>) -> bool {
        access::allowed(&self.access_keys, key)
    }

    /// Export/import are operator tools: they need `ADMIN_API_KEY` in
    /// `X-APIKey` (constant-time compare) and refuse everything when it is unset.
    /// The `--oauth-url` Duplicati's command line needs for this broker: its
    /// `/refresh`, behind the gate's `/k/<key>` prefix when the gate is on
    /// (the key is the user's to fill in; a page never shows one).
    pub fn oauth_url(&self) -> String {
        let gate = if self.access_keys.is_empty() {
            ""
        } else {
            "/k/<your access key>"
        };
        format!("{}{gate}/refresh", self.origin.trim_end_matches('/'))
    }

    pub fn check_admin_key(&self, sent: Option<&str>) -> Result<(), BrokerError> {
        let configured = self.admin_key.as_ref().ok_or(BrokerError::Forbidden {
            code: "api_disabled",
            what: "export/import is disabled on this broker (no ADMIN_API_KEY)",
        })?;
        if ct_eq(
            sent.unwrap_or_default().as_bytes(),
            configured.secret().as_bytes(),
        ) {
            Ok(())
        } else {
            Err(BrokerError::Forbidden {
                code: "invalid_api_key",
                what: "missing or wrong X-APIKey",
            })
        }
    }

    /// The error that tells a client its user must log in again for a new
    /// authid, here: a pass-through (v2) authid, which nothing stored can
    /// re-authorize in place.
    pub fn log_in_again(&self) -> BrokerError {
        BrokerError::ReauthorizationRequired {
            broker_url: format!("{}/", self.origin),
        }
    }

    /// The error that tells a client its user must re-authorize a stored
    /// grant, on this broker's re-authorization page (`crate::reauthorize`).
    pub fn reauthorize(&self) -> BrokerError {
        BrokerError::ReauthorizationRequired {
            broker_url: format!("{}{}", self.origin, crate::error::REAUTHORIZE_PATH),
        }
    }

    /// The operator's `REDIRECT_URIS`: redirect URIs the authorization
    /// endpoint accepts besides loopback ones (`crate::authorize`).
    pub fn redirect_uris(&self) -> Vec<String> {
        crate::authorize::parse_redirect_uris(self.get("REDIRECT_URIS").as_deref())
    }

    /// The redirect URI this broker registers at `provider_id`.
    pub fn redirect_uri(&self, provider_id: &str) -> String {
        crate::login::redirect_uri(&self.origin, provider_id)
    }
}

/// `D1_SHARDS` unset or blank: one shard, today's `DB` binding.
pub const DEFAULT_SHARDS: &str = "DB";

/// One message for every broken `D1_SHARDS` (the README says the rules).
const BAD_SHARDS: BrokerError = BrokerError::Misconfigured {
    what: "D1_SHARDS must list at most 999 distinct D1 binding names",
};

/// `D1_SHARDS`: the D1 bindings grants are sharded over, separated by spaces,
/// shard 1 first; unset or blank is [`DEFAULT_SHARDS`]. Shard k is the k-th
/// entry, and an authid names its shard (`crate::authid`), so entries are
/// only ever appended: reordering or removing one would send authids to the
/// wrong database. A repeated or invalid name, or more shards than an
/// authid can name (999), is a configuration error.
pub fn parse_shards(setting: Option<&str>) -> Result<Vec<String>, BrokerError> {
    let names: Vec<String> = setting
        .unwrap_or(DEFAULT_SHARDS)
        .split(' ')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Ok(vec![DEFAULT_SHARDS.to_string()]);
    }
    let valid = |n: &str| {
        n.len() <= 64
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !n.bytes().next().is_some_and(|b| b.is_ascii_digit())
    };
    // Quadratic, but at most 999 short names, and no sort code in the wasm.
    let repeated = names
        .iter()
        .enumerate()
        .any(|(i, n)| names.iter().take(i).any(|m| m == n));
    if repeated || names.len() > usize::from(Shard::MAX) || !names.iter().all(|n| valid(n)) {
        return Err(BAD_SHARDS);
    }
    Ok(names)
}

/// The shard for a new grant among `shard_count` (at least one), from a
/// uniformly random `draw`: `draw * count / 2^32`, so each shard gets an
/// equal run of draws (within one draw in 2^32 / count: a bias below 10^-6).
pub fn pick(shard_count: usize, draw: u32) -> Shard {
    let count = shard_count.clamp(1, usize::from(Shard::MAX)) as u64;
    let k = (u64::from(draw) * count) >> 32;
    Shard::new(k as u16 + 1).unwrap_or(Shard::FIRST)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "1:0123456789abcdef0123456789abcdef";

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_bindings(
            move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            "https://broker.example".into(),
            1_000,
        )
    }

    const DEMO: &str = r#"[{"id":"demo","name":"Demo","authorize_url":"http://127.0.0.1:9/a",
        "token_url":"http://127.0.0.1:9/t","scopes":"s","client_id":"cid"}]"#;

    #[test]
    fn a_provider_is_offered_only_with_client_id_and_secret() {
        let c = config(&[("OAUTH_PROVIDERS", DEMO)]);
        let ids = |c: &Config| {
            c.offered()
                .unwrap()
                .iter()
                .map(|p| p.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&c), ["jottacloud"], "a public client needs no secret");
        let (j, secret) = c.provider("jottacloud").unwrap();
        assert!(j.public_client && secret.is_none());
        assert_eq!(
            c.provider("demo").unwrap_err(),
            BrokerError::UnknownProvider
        );
        let c = config(&[("OAUTH_PROVIDERS", DEMO), ("CLIENT_SECRET_DEMO", "s3cret")]);
        let (p, secret) = c.provider("demo").unwrap();
        assert_eq!(
            (p.id.as_str(), secret.map(ClientSecret::secret)),
            ("demo", Some("s3cret"))
        );
        assert_eq!(ids(&c), ["jottacloud", "demo"]);
        // A built-in needs its client id variable too.
        let c = config(&[("CLIENT_SECRET_DROPBOX", "x")]);
        assert!(c.provider("dropbox").is_err());
        let c = config(&[("CLIENT_SECRET_DROPBOX", "x"), ("CLIENT_ID_DROPBOX", "id")]);
        assert_eq!(c.provider("dropbox").unwrap().0.client_id, "id");
    }

    #[test]
    fn the_oauth_url_shown_to_users_carries_the_gate_prefix_only_when_gated() {
        assert_eq!(config(&[]).oauth_url(), "https://broker.example/refresh");
        assert_eq!(
            config(&[("ACCESS_KEYS", "k1")]).oauth_url(),
            "https://broker.example/k/<your access key>/refresh"
        );
    }

    #[test]
    fn an_oauth_handler_to_move_grants_from_needs_its_url_and_api_key() {
        assert!(config(&[]).handler_move_source().unwrap().is_none());
        let c = config(&[
            ("OAUTH_HANDLER_URL", "https://old.example"),
            ("OAUTH_HANDLER_API_KEY", "0123456789"),
        ]);
        assert_eq!(
            c.handler_move_source().unwrap().unwrap().export_url,
            "https://old.example/export"
        );
        let half = config(&[("OAUTH_HANDLER_URL", "https://old.example")]);
        assert_eq!(
            half.handler_move_source().unwrap_err().code(),
            "server_misconfigured"
        );
    }

    #[test]
    fn a_plain_http_oauth_handler_off_loopback_is_misconfigured() {
        let with_url = |url: &str| {
            config(&[
                ("OAUTH_HANDLER_URL", url),
                ("OAUTH_HANDLER_API_KEY", "0123456789"),
            ])
        };
        let plain = with_url("http://old.example");
        assert_eq!(
            plain.handler_move_source().unwrap_err(),
            BrokerError::Misconfigured {
                what: "OAUTH_HANDLER_URL must be an https URL (plain http only to a loopback \
                       host: 127.0.0.1, [::1], localhost), set together with OAUTH_HANDLER_API_KEY",
            }
        );
        assert!(plain.handler_move_source().unwrap_err().cause().is_some());
        for local in [
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
        ] {
            assert!(
                with_url(local).handler_move_source().unwrap().is_some(),
                "{local}"
            );
        }
    }

    #[test]
    fn a_broken_setting_fails_only_what_needs_it() {
        let c = config(&[("OAUTH_PROVIDERS", "{oops"), ("SEALING_SECRET", SECRET)]);
        assert_eq!(c.catalogue().unwrap_err().code(), "server_misconfigured");
        assert!(c.keys().is_ok());
        let c = config(&[("OAUTH_PROVIDERS", DEMO), ("SEALING_SECRET", "short")]);
        assert_eq!(c.keys().unwrap_err().code(), "server_misconfigured");
        assert!(c.catalogue().is_ok());
        let c = config(&[]);
        assert_eq!(
            c.keys().unwrap_err(),
            BrokerError::Misconfigured {
                what: "SEALING_SECRET is not set"
            }
        );
    }

    #[test]
    fn blank_settings_count_as_unset_and_defaults_apply() {
        let c = config(&[("OPENER_ORIGINS", "  "), ("ACCESS_KEYS", " ")]);
        assert_eq!(c.opener_origins, OpenerOrigins::parse(None));
        assert!(c.opener_origins.allows("http://127.0.0.1:8300"));
        assert!(c.gate_allows(None), "no keys: the gate is open");
        assert_eq!(c.upstream_timeout_ms, refresh::UPSTREAM_TIMEOUT_MS);
        let c = config(&[
            ("OPENER_ORIGINS", "https://a.example https://b.example"),
            ("UPSTREAM_TIMEOUT_MS", "2000"),
        ]);
        assert_eq!(
            c.opener_origins.targets(None),
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(c.upstream_timeout_ms, 2000);
        assert_eq!(c.upstream_patience_ms, refresh::UPSTREAM_PATIENCE_MS);
        let c = config(&[
            ("UPSTREAM_TIMEOUT_MS", "2000"),
            ("UPSTREAM_PATIENCE_MS", "1000"),
        ]);
        assert_eq!(
            c.upstream_patience_ms, 2000,
            "never below the client timeout"
        );
    }

    #[test]
    fn the_access_gate_and_the_admin_key_need_their_exact_keys() {
        let c = config(&[("ACCESS_KEYS", "k1, k2"), ("ADMIN_API_KEY", "admin")]);
        assert!(c.gate_allows(Some("k2")) && !c.gate_allows(Some("k3")));
        assert!(!c.gate_allows(None));
        assert!(c.check_admin_key(Some("admin")).is_ok());
        assert_eq!(
            c.check_admin_key(Some("admi")).unwrap_err().code(),
            "invalid_api_key"
        );
        assert_eq!(
            c.check_admin_key(None).unwrap_err().code(),
            "invalid_api_key"
        );
        assert_eq!(
            config(&[])
                .check_admin_key(Some("admin"))
                .unwrap_err()
                .code(),
            "api_disabled"
        );
    }

    #[test]
    fn without_d1_shards_there_is_one_shard_the_db_binding() {
        assert_eq!(parse_shards(None).unwrap(), ["DB"]);
        assert_eq!(parse_shards(Some("  ")).unwrap(), ["DB"]);
        let c = config(&[]);
        assert_eq!(c.shards().unwrap(), ["DB"]);
        assert_eq!(c.shard_binding(Shard::FIRST).unwrap(), Some("DB"));
        assert_eq!(c.shard_binding(Shard::new(2).unwrap()).unwrap(), None);
        for _ in 0..100 {
            assert_eq!(c.shard_for_new_grant().unwrap(), Shard::FIRST);
        }
    }

    #[test]
    fn d1_shards_lists_the_bindings_in_order_shard_1_first() {
        assert_eq!(
            parse_shards(Some(" DB  DB_2 DB_3 ")).unwrap(),
            ["DB", "DB_2", "DB_3"]
        );
        let c = config(&[("D1_SHARDS", "DB DB_2 grants_3")]);
        let at = |k| c.shard_binding(Shard::new(k).unwrap()).unwrap();
        assert_eq!(
            (at(1), at(2), at(3), at(4)),
            (Some("DB"), Some("DB_2"), Some("grants_3"), None)
        );
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[c.shard_for_new_grant().unwrap().index()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 700), "{seen:?}");
    }

    #[test]
    fn a_repeated_an_invalid_or_a_999th_plus_one_shard_is_misconfigured() {
        for bad in [
            "DB DB",
            "DB DB_2 DB",
            "DB DB-2",
            "DB 2DB",
            "DB DB.2",
            "DB D\u{e9}",
            "DB DB,DB_2",
            "DB\tDB_2",
        ] {
            let err = parse_shards(Some(bad)).unwrap_err();
            assert_eq!(err.code(), "server_misconfigured", "{bad}");
        }
        let many = |n: usize| {
            (1..=n)
                .map(|i| format!("DB_{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(parse_shards(Some(&many(999))).unwrap().len(), 999);
        assert!(parse_shards(Some(&many(1000))).is_err());
        assert!(parse_shards(Some(&format!("DB {}", "X".repeat(65)))).is_err());
        // Only what touches D1 fails: the rest of the configuration stands.
        let c = config(&[("D1_SHARDS", "DB DB"), ("SEALING_SECRET", SECRET)]);
        assert_eq!(c.shards().unwrap_err().code(), "server_misconfigured");
        assert!(c.shard_for_new_grant().is_err());
        assert!(c.keys().is_ok());
    }

    #[test]
    fn the_shard_choice_splits_the_draws_evenly() {
        assert_eq!(pick(1, 0), Shard::FIRST);
        assert_eq!(pick(1, u32::MAX), Shard::FIRST);
        assert_eq!(pick(0, u32::MAX), Shard::FIRST, "never out of range");
        for count in [2usize, 3, 7, 999] {
            assert_eq!(pick(count, 0), Shard::FIRST);
            assert_eq!(pick(count, u32::MAX).index(), count - 1);
            // Evenly spaced draws land evenly (within the rounding of the spacing).
            let mut seen = vec![0u32; count];
            let steps = 1000 * count as u64;
            for i in 0..steps {
                let draw = ((i << 32) / steps) as u32;
                seen[pick(count, draw).index()] += 1;
            }
            let (lo, hi) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
            assert!(hi - lo <= 2, "{count}: {lo}..{hi}");
        }
    }

    #[test]
    fn reauthorization_points_at_this_broker() {
        let c = config(&[]);
        assert_eq!(
            c.reauthorize(),
            BrokerError::ReauthorizationRequired {
                broker_url: "https://broker.example/reauthorize".into()
            }
        );
        assert_eq!(
            c.log_in_again(),
            BrokerError::ReauthorizationRequired {
                broker_url: "https://broker.example/".into()
            }
        );
        assert_eq!(
            c.redirect_uri("demo"),
            "https://broker.example/callback/demo"
        );
    }

    #[test]
    fn the_server_keys_are_derived_once_per_isolate_and_again_after_a_rotation() {
        const NEXT: &str = "2:fedcba9876543210fedcba9876543210";
        let first = config(&[("SEALING_SECRET", SECRET)])
            .keys()
            .unwrap()
            .clone();
        let again = config(&[("SEALING_SECRET", SECRET)])
            .keys()
            .unwrap()
            .clone();
        assert!(Rc::ptr_eq(&first, &again), "same settings: derived once");
        let rotated = config(&[
            ("SEALING_SECRET", NEXT),
            ("SEALING_SECRETS_PREVIOUS", SECRET),
        ])
        .keys()
        .unwrap()
        .clone();
        assert!(!Rc::ptr_eq(&first, &rotated));
        assert_eq!(rotated.current_version(), 2);
        let back = config(&[("SEALING_SECRET", SECRET)])
            .keys()
            .unwrap()
            .clone();
        assert_eq!(
            back.current_version(),
            1,
            "a changed setting is never served stale"
        );
        assert!(config(&[("SEALING_SECRET", "short")]).keys().is_err());
    }
}
