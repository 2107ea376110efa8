//! Abuse controls decided without the runtime: the operator's access gate
//! (`ACCESS_KEYS`) and the keys requests are rate-limited by. Which routes are
//! gated or limited is a column of the route table (`crate::route`).

use std::net::IpAddr;

use crate::error::BrokerError;
use crate::secret::ct_eq;

/// The keys of `ACCESS_KEYS`: separated by commas or whitespace; blank = gate off.
pub fn parse_keys(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a request presenting `key` may pass. With no keys configured the
/// gate is open. Every configured key is compared (constant time each), so
/// timing reveals neither which key matched nor how much of one.
pub fn allowed(keys: &[String], key: Option<&str>) -> bool {
    if keys.is_empty() {
        return true;
    }
    let Some(key) = key else { return false };
    keys.iter()
        .fold(false, |ok, k| ct_eq(k.as_bytes(), key.as_bytes()) | ok)
}

/// The key a request presents at the gate: the `X-Access-Key` header, else the
/// path prefix `/k/<key>/` ([`split_key_prefix`]), else the `key=` query
/// parameter. An empty header counts as absent, so a client or proxy that
/// sends `X-Access-Key:` with nothing cannot hide a valid key.
pub fn presented_key<'a>(
    header: Option<&'a str>,
    path: Option<&'a str>,
    query: Option<&'a str>,
) -> Option<&'a str> {
    header.filter(|h| !h.is_empty()).or(path).or(query)
}

/// A request path that starts with the operator's key: `/k/<key>/<route>`. It
/// lets one oauth-url (`https://broker/k/<key>/refresh`) carry the key through
/// every Duplicati surface, each of which appends to the URL differently.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyPrefix<'p> {
    /// The key, percent-decoded.
    pub key: String,
    /// `/k/<key>` as the request spelled it: the links and redirects of the
    /// answer start with it, so the next request carries the key too.
    pub prefix: &'p str,
    /// The path the route table resolves (starts with `/`).
    pub path: &'p str,
}

/// Splits `/k/<key>/<route>`. Not a key prefix (the path is resolved as it
/// is, and `/k/…` matches no route): `/k/<key>` without a route path, an empty
/// key (`/k//x`), a key with an encoded `/` or with broken percent-encoding.
pub fn split_key_prefix(path: &str) -> Option<KeyPrefix<'_>> {
    let rest = path.strip_prefix("/k/")?;
    let end = rest.find('/')?;
    let key = key_segment(&rest[..end])?;
    Some(KeyPrefix {
        key,
        prefix: &path[..3 + end],
        path: &rest[end..],
    })
}

/// The key a `<key>` path segment spells (as in `/k/<key>`), percent-decoded;
/// `None` when it is empty, holds an encoded `/` or broken percent-encoding.
pub fn key_segment(segment: &str) -> Option<String> {
    percent_decode(segment).filter(|key| !key.is_empty() && !key.contains('/'))
}

/// Percent-decodes one path segment; `None` for a broken escape or bytes that
/// are not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The query parameter the gate's key form sends beside `key=`: this request
/// is a person's key, typed into that form. A gated page admitted with it
/// answers with a *Continue* link (`pages::key_accepted`) instead of running
/// its route: a form's navigation may not be redirected to another origin
/// (CSP `form-action 'self'`, which Chromium checks on every redirect of a
/// form submission), and a gated page's route usually redirects to the
/// provider. A link is a new navigation, not a form's, so it may.
pub const KEY_ENTERED: &str = "key_entered";

/// The gate's answer to a request without one of the keys. On a browser route
/// reached with `GET` it comes with a form that asks for the key (`pages::key_form`).
pub const KEY_REQUIRED: BrokerError = BrokerError::Forbidden {
    code: "access_key_required",
    what: "this broker needs an access key (/k/<key>/ or key= in the URL, or X-Access-Key)",
};

/// The answer to a limited request that carries no client address.
pub const NO_CLIENT_ADDRESS: BrokerError = BrokerError::BadRequest {
    code: "missing_client_address",
    what: "the request carries no client address (CF-Connecting-IP), \
           which the broker's rate limits need",
};

/// Rate-limit key for the client address in `CF-Connecting-IP`. IPv6 clients are
/// limited per /64, the unit one subscriber usually controls.
///
/// Cloudflare's edge sets `CF-Connecting-IP` on every request from the internet,
/// overwriting whatever the client sent, and `wrangler dev` sets it to the peer of
/// the socket (`127.0.0.1`) when the request has none (checked with a request:
/// it passes a client-sent value through unchanged, so locally any address can be
/// claimed). A request without a parsable address did not come through either
/// (an operator's own Worker calling through a service binding, say). Such a
/// request is refused on the limited routes ([`NO_CLIENT_ADDRESS`]): keying it
/// by anything else would either put every such request into one shared bucket
/// (one client exhausting it for all) or let the sender pick its bucket.
pub fn client_key(cf_connecting_ip: Option<&str>) -> Result<String, BrokerError> {
    match client_address(cf_connecting_ip)? {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            Ok(format!("ip6:{a:x}:{b:x}:{c:x}:{d:x}::/64"))
        }
        IpAddr::V4(v4) => Ok(format!("ip4:{v4}")),
    }
}

/// Rate-limit key for the client's network: the IPv6 /48, the IPv4 /24. It
/// keys the budgets that must hold against a party with many addresses, which
/// [`client_key`]'s per-address (per-/64) budget does not: a site is usually
/// given a /48, 65,536 /64s; a /24 is the smallest IPv4 block routed on the
/// internet, so addresses rented in bulk come in /24s. Neighbours behind one
/// /24 (an office, a carrier's NAT pool) share it, which is why the budgets it
/// keys count only failures (`RL_USER_CODE_48` counts missed device-code
/// lookups, never right codes).
pub fn network_key(cf_connecting_ip: Option<&str>) -> Result<String, BrokerError> {
    match client_address(cf_connecting_ip)? {
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            Ok(format!("ip6:{a:x}:{b:x}:{c:x}::/48"))
        }
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Ok(format!("ip4:{a}.{b}.{c}.0/24"))
        }
    }
}

/// The client address in `CF-Connecting-IP`. An IPv4-mapped IPv6 address
/// (`::ffff:203.0.113.9`) is the IPv4 address it carries: keyed as IPv6 it
/// would put every IPv4 client into the one /64 `::ffff:0:0/64`.
fn client_address(cf_connecting_ip: Option<&str>) -> Result<IpAddr, BrokerError> {
    match cf_connecting_ip.map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V6(v6))) => Ok(match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }),
        Some(Ok(v4)) => Ok(v4),
        None | Some(Err(_)) => Err(NO_CLIENT_ADDRESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_keys_means_open() {
        assert!(allowed(&parse_keys(None), None));
        assert!(allowed(&parse_keys(Some("  ")), None));
    }

    #[test]
    fn the_gate_needs_one_of_the_keys() {
        let keys = parse_keys(Some("alpha, beta\ngamma"));
        assert_eq!(keys, ["alpha", "beta", "gamma"]);
        assert!(allowed(&keys, Some("beta")));
        assert!(allowed(&keys, Some("gamma")));
        assert!(!allowed(&keys, Some("bet")));
        assert!(!allowed(&keys, Some("")));
        assert!(!allowed(&keys, None));
    }

    #[test]
    fn ipv6_clients_share_a_64() {
        let key = |ip: &str| client_key(Some(ip)).unwrap();
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), key("2001:db8:1:2:ffff::1"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.9"), "ip4:203.0.113.9");
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_is_keyed_as_the_ipv4_address() {
        let key = |ip: &str| client_key(Some(ip)).unwrap();
        assert_eq!(key("::ffff:203.0.113.9"), "ip4:203.0.113.9");
        assert_eq!(key("::ffff:cb00:7109"), "ip4:203.0.113.9");
        assert_ne!(key("::ffff:203.0.113.9"), key("::ffff:198.51.100.9"));
    }

    #[test]
    fn networks_are_the_ipv6_48_and_the_ipv4_24() {
        let net = |ip: &str| network_key(Some(ip)).unwrap();
        // IPv6, written out in full and compressed: the first three groups.
        assert_eq!(
            net("2001:0db8:0001:0002:0003:0004:0005:0006"),
            "ip6:2001:db8:1::/48"
        );
        assert_eq!(net("2001:db8:1::1"), "ip6:2001:db8:1::/48");
        assert_eq!(net("2001:db8:1:ffff::"), net("2001:db8:1:2:3:4:5:6"));
        assert_ne!(net("2001:db8:1::1"), net("2001:db8:2::1"));
        assert_eq!(net("2001:db8::1"), "ip6:2001:db8:0::/48");
        assert_eq!(net("::1"), "ip6:0:0:0::/48");
        // Two /64s of one /48 are two clients but one network.
        assert_ne!(
            client_key(Some("2001:db8:1:2::1")),
            client_key(Some("2001:db8:1:3::1"))
        );
        assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        // IPv4: the /24.
        assert_eq!(net("203.0.113.9"), "ip4:203.0.113.0/24");
        assert_eq!(net("203.0.113.250"), net("203.0.113.9"));
        assert_ne!(net("203.0.113.9"), net("203.0.114.9"));
        // IPv4-mapped IPv6: the IPv4 /24, not the mapped /48 every IPv4 client shares.
        assert_eq!(net("::ffff:203.0.113.9"), "ip4:203.0.113.0/24");
        assert_ne!(net("::ffff:203.0.113.9"), net("::ffff:198.51.100.9"));
        // An IPv6 /48 never collides with an IPv4 /24.
        assert_ne!(net("::cb00:7109"), net("203.0.113.9"));
    }

    #[test]
    fn a_request_without_a_client_address_is_refused_not_lumped_together() {
        for missing in [
            None,
            Some(""),
            Some("garbage"),
            Some("203.0.113.9:443"),
            Some(" 203.0.113.9"),
        ] {
            assert_eq!(client_key(missing), Err(NO_CLIENT_ADDRESS), "{missing:?}");
            assert_eq!(network_key(missing), Err(NO_CLIENT_ADDRESS), "{missing:?}");
        }
        assert_eq!(NO_CLIENT_ADDRESS.status(), 400);
    }

    #[test]
    fn an_empty_access_key_header_does_not_hide_key_in_the_query() {
        assert_eq!(presented_key(Some(""), None, Some("k1")), Some("k1"));
        assert_eq!(presented_key(None, None, Some("k1")), Some("k1"));
        assert_eq!(
            presented_key(Some("k2"), None, Some("k1")),
            Some("k2"),
            "the header wins"
        );
        assert_eq!(presented_key(Some(""), None, None), None);
        let keys = parse_keys(Some("k1"));
        assert!(allowed(&keys, presented_key(Some(""), None, Some("k1"))));
    }

    #[test]
    fn a_key_prefix_is_stripped_and_presented() {
        let k = split_key_prefix("/k/K/refresh").expect("a key prefix");
        assert_eq!(
            k,
            KeyPrefix {
                key: "K".into(),
                prefix: "/k/K",
                path: "/refresh"
            }
        );
        let k = split_key_prefix("/k/a%26b%3D/").expect("an encoded key");
        assert_eq!(
            (k.key.as_str(), k.prefix, k.path),
            ("a&b=", "/k/a%26b%3D", "/")
        );
        // Only the first prefix is stripped: `/k/A/k/B/x` resolves `/k/B/x` (no route).
        assert_eq!(
            split_key_prefix("/k/A/k/B/x").map(|k| k.path),
            Some("/k/B/x")
        );
        // The path's key sits between the header and the query.
        assert_eq!(presented_key(None, Some("p"), Some("q")), Some("p"));
        assert_eq!(presented_key(Some("h"), Some("p"), Some("q")), Some("h"));
        assert_eq!(presented_key(Some(""), Some("p"), None), Some("p"));
    }

    #[test]
    fn a_key_segment_is_decoded_and_never_empty_or_a_path() {
        assert_eq!(key_segment("K"), Some("K".into()));
        assert_eq!(key_segment("a%26b%3D"), Some("a&b=".into()));
        for s in ["", "a%2Fb", "a%2fb", "%zz", "%4", "%ff"] {
            assert_eq!(key_segment(s), None, "{s}");
        }
    }

    #[test]
    fn what_is_not_a_key_prefix() {
        for p in [
            "/k/K",
            "/k/",
            "/k//x",
            "/k//",
            "/k/a%2Fb/refresh",
            "/k/a%2fb/refresh",
            "/k/%zz/refresh",
            "/k/%4/refresh",
            "/k/%ff/refresh",
            "/refresh",
            "/K/k/refresh",
            "k/K/refresh",
        ] {
            assert_eq!(split_key_prefix(p), None, "{p}");
        }
    }
}
