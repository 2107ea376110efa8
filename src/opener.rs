//! Where the result page may `postMessage` the authid (Duplicati's new UI).
//!
//! `window.postMessage` needs an exact target origin (or `*`), and the opener's
//! origin cannot be read cross-origin. So the broker learns a *hint*: the
//! origin in the `Referer` of the popup's first request (Duplicati's ngclient
//! opens `<oauth-url>?type=<id>` with `window.open`; the browser's default
//! referrer policy sends the opener's origin). The hint is untrusted and need
//! not be: it is used only if it matches an operator pattern, and the browser
//! delivers a message only when the opener's *current* origin equals the
//! target, so a forged hint gets nothing to a window that is not that origin.
//!
//! Patterns (`OPENER_ORIGINS`, space-separated):
//! - `http://127.0.0.1:8200`: exactly this origin (always posted to);
//! - `http://localhost:*`: this scheme and host, any port (posted to when the
//!   hint matches);
//! - `*`: any origin. The page then posts with target `*`: any page that opens
//!   the broker, on any site, receives the authid of whoever logs in there.
//!   Only for brokers whose users all know what opened the popup.

/// The default: any loopback origin on any port (Duplicati listens on 8200–8989).
/// Duplicati's default origins are listed exactly as well: they allow nothing
/// more, but are posted to even when the browser sent no `Referer` (as before
/// port wildcards existed).
pub const DEFAULT_PATTERNS: &str = "http://localhost:* http://127.0.0.1:* http://[::1]:* \
                                    http://localhost:8200 http://127.0.0.1:8200";

/// The cookie that carries the hint from the index page to the callback (the
/// shell sets it with `login::cookie`: same lifetime and flags as the login's).
/// Only [`OpenerOrigins::hint_from_referer`]'s answer is stored: a serialized
/// origin, which never holds `;`, `,`, space or quotes.
pub const HINT_COOKIE: &str = "__Host-broker-opener";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`
    Any,
    /// A serialized origin (`scheme://host[:port]`).
    Exact(String),
    /// `scheme://host:*`
    AnyPort { scheme: String, host: String },
}

/// The operator's allowlist of opener origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenerOrigins(Vec<Pattern>);

/// `scheme://host[:port]` of an http(s) URL, normalized (lower-case host,
/// default port dropped); `None` for anything else.
pub fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url.trim()).ok()?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return None;
    }
    Some(u.origin().ascii_serialization())
}

impl OpenerOrigins {
    /// Parses a space-separated list of patterns; `None` or blank gives the
    /// default. Entries that are neither `*`, an origin, nor `scheme://host:*`
    /// are ignored (they could never match).
    pub fn parse(list: Option<&str>) -> OpenerOrigins {
        let list = list
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_PATTERNS);
        OpenerOrigins(
            list.split_whitespace()
                .filter_map(|entry| {
                    if entry == "*" {
                        return Some(Pattern::Any);
                    }
                    if let Some(base) = entry.strip_suffix(":*") {
                        let u = url::Url::parse(base).ok()?;
                        let plain = u.port().is_none()
                            && matches!(u.scheme(), "http" | "https")
                            && u.path() == "/"
                            && u.query().is_none();
                        return plain.then(|| Pattern::AnyPort {
                            scheme: u.scheme().to_string(),
                            host: u.host_str().unwrap_or_default().to_string(),
                        });
                    }
                    origin_of(entry).map(Pattern::Exact)
                })
                .collect(),
        )
    }

    /// Whether the page may post to `origin` (a serialized origin).
    /// The list as the operator would write it (the doctor shows it).
    pub fn describe(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|p| match p {
                Pattern::Any => "*".to_string(),
                Pattern::Exact(o) => o.clone(),
                Pattern::AnyPort { scheme, host } => format!("{scheme}://{host}:*"),
            })
            .collect()
    }

    /// Whether the list is `*`: any page that opens the broker.
    pub fn allows_any(&self) -> bool {
        self.0.contains(&Pattern::Any)
    }

    pub fn allows(&self, origin: &str) -> bool {
        let Ok(u) = url::Url::parse(origin.trim()) else {
            return false;
        };
        // Only a bare origin counts, not a URL with a path that has one.
        let bare = u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none();
        let Some(normal) = origin_of(origin).filter(|_| bare) else {
            return false;
        };
        self.0.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(o) => *o == normal,
            Pattern::AnyPort { scheme, host } => {
                u.scheme() == scheme && u.host_str() == Some(host.as_str())
            }
        })
    }

    /// The hint worth keeping from a `Referer` header: its origin, if allowed.
    pub fn hint_from_referer(&self, referer: Option<&str>) -> Option<String> {
        referer.and_then(origin_of).filter(|o| self.allows(o))
    }

    /// The exact targets the result page posts to: `*` alone when any origin
    /// is allowed; otherwise every exact pattern, plus the hint if allowed.
    pub fn targets(&self, hint: Option<&str>) -> Vec<String> {
        if self.0.contains(&Pattern::Any) {
            return vec!["*".to_string()];
        }
        let mut out: Vec<String> = self
            .0
            .iter()
            .filter_map(|p| match p {
                Pattern::Exact(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        if let Some(h) = hint.and_then(origin_of).filter(|h| self.allows(h)) {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default() -> OpenerOrigins {
        OpenerOrigins::parse(None)
    }

    #[test]
    fn by_default_any_loopback_origin_on_any_port_is_allowed() {
        let d = default();
        for o in [
            "http://localhost:8200",
            "http://127.0.0.1:8300",
            "http://127.0.0.1:8989",
            "http://[::1]:8200",
            "http://localhost",
            "http://LOCALHOST:8200",
        ] {
            assert!(d.allows(o), "{o}");
        }
    }

    #[test]
    fn by_default_no_other_origin_is_allowed() {
        let d = default();
        for o in [
            "https://localhost:8200",
            "http://localhost.evil.example:8200",
            "http://127.0.0.2:8200",
            "http://evil.example",
            "http://127.0.0.1:8200/some/path",
            "null",
            "",
            "*",
            "javascript:alert(1)",
            "file:///etc/passwd",
        ] {
            assert!(!d.allows(o), "{o}");
        }
    }

    #[test]
    fn exact_entries_match_only_themselves_and_are_always_targets() {
        let o = OpenerOrigins::parse(Some("https://duplicati.example.org http://nas:8200"));
        assert!(o.allows("https://duplicati.example.org"));
        assert!(o.allows("https://duplicati.example.org:443"));
        assert!(o.allows("http://nas:8200"));
        assert!(!o.allows("http://nas:8201"));
        assert!(
            !o.allows("http://localhost:8200"),
            "the default is replaced"
        );
        assert_eq!(
            o.targets(None),
            ["https://duplicati.example.org", "http://nas:8200"]
        );
    }

    #[test]
    fn a_port_wildcard_needs_a_matching_hint_to_become_a_target() {
        let d = default();
        let duplicati = ["http://localhost:8200", "http://127.0.0.1:8200"];
        assert_eq!(
            d.targets(None),
            duplicati,
            "Duplicati's default, without a hint"
        );
        assert_eq!(
            d.targets(Some("http://127.0.0.1:8300")),
            [duplicati[0], duplicati[1], "http://127.0.0.1:8300"]
        );
        assert_eq!(d.targets(Some("http://evil.example:8300")), duplicati);
        assert_eq!(d.targets(Some("http://127.0.0.1:8200")), duplicati);
        let wild = OpenerOrigins::parse(Some("http://localhost:*"));
        assert!(wild.targets(None).is_empty());
    }

    #[test]
    fn a_star_posts_to_any_origin() {
        let o = OpenerOrigins::parse(Some("http://localhost:8200 *"));
        assert!(o.allows("https://anything.example"));
        assert_eq!(o.targets(Some("https://anything.example")), ["*"]);
    }

    #[test]
    fn the_hint_is_the_referers_origin_when_allowed() {
        let d = default();
        assert_eq!(
            d.hint_from_referer(Some("http://127.0.0.1:8300/ngclient/destination?x=1")),
            Some("http://127.0.0.1:8300".to_string())
        );
        assert_eq!(d.hint_from_referer(Some("https://evil.example/")), None);
        assert_eq!(d.hint_from_referer(Some("not a url")), None);
        assert_eq!(d.hint_from_referer(None), None);
    }

    #[test]
    fn malformed_patterns_are_ignored_not_widened() {
        let o = OpenerOrigins::parse(Some("localhost:* http://x:*/path ftp://h:* http://y:1:*"));
        assert!(!o.allows("http://localhost:8200"));
        assert!(!o.allows("http://x:1"));
        assert!(o.targets(Some("http://x:1")).is_empty());
        assert_eq!(OpenerOrigins::parse(Some("  ")), default());
    }

    #[test]
    fn a_hint_is_safe_as_a_cookie_value() {
        let d = default();
        for r in ["http://127.0.0.1:8300/a;b=c d", "http://[::1]:8200/\"x\",y"] {
            let h = d.hint_from_referer(Some(r)).expect("loopback");
            assert!(!h.contains([';', ',', ' ', '"', '\\']), "{h}");
        }
    }

    /// Size (docs/develop.md, "Size"): `idna_adapter` is pinned to its 1.0 stub (Cargo.toml), so a
    /// non-ASCII host is a parse error and is refused, where ICU4X would have mapped
    /// it to Punycode. ASCII hosts, Punycode ones included, are unchanged.
    #[test]
    fn url_with_non_ascii_host_is_refused() {
        assert_eq!(origin_of("https://b\u{fc}cher.example"), None);
        assert!(!OpenerOrigins::parse(Some("*")).allows("https://b\u{fc}cher.example"));
        assert!(!OpenerOrigins::parse(Some("https://b\u{fc}cher.example"))
            .allows("https://xn--bcher-kva.example"));
        assert_eq!(
            origin_of("https://xn--bcher-kva.example/x").as_deref(),
            Some("https://xn--bcher-kva.example")
        );
        assert_eq!(
            origin_of("HTTPS://Login.Example.COM:443/a").as_deref(),
            Some("https://login.example.com")
        );
    }
}
