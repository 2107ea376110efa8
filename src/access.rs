//! Abuse controls decided without the runtime: the operator's access gate
//! (`ACCESS_KEYS`) and the keys requests are rate-limited by. Which routes are
//! gated or limited is a column of the route table (`crate::route`).

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

/// Rate-limit key for a client address (`CF-Connecting-IP`). IPv6 clients are
/// limited per /64, the unit one subscriber usually controls.
pub fn ip_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V4(v4)) => format!("ip4:{v4}"),
        Err(_) => "ip:unknown".to_string(),
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
        assert_eq!(
            ip_key("2001:db8:1:2:3:4:5:6"),
            ip_key("2001:db8:1:2:ffff::1")
        );
        assert_ne!(ip_key("2001:db8:1:2::1"), ip_key("2001:db8:1:3::1"));
        assert_eq!(ip_key("203.0.113.9"), "ip4:203.0.113.9");
        assert_eq!(ip_key("garbage"), "ip:unknown");
    }
}
