//! Cookies: reading one from a `Cookie` header and building a `Set-Cookie`
//! value. Every cookie the broker sets has the same flags; which cookies
//! exist, and what they hold, belongs to the module that owns each
//! (`login`, `handoff`, `opener`, `cli_token`, `reauthorize`, `device`).

/// A `Set-Cookie` value: `__Host-` prefixed names need Secure and Path=/;
/// HttpOnly keeps scripts out; Lax lets the provider's top-level redirect
/// back carry it. `max_age` 0 clears the cookie.
pub fn set(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

/// A non-empty cookie value from a `Cookie` header.
pub fn value(header: &str, name: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_read_by_its_exact_name_and_an_empty_one_is_absent() {
        let header = "a=b; __Host-x=v1; c=d";
        assert_eq!(value(header, "__Host-x").as_deref(), Some("v1"));
        assert_eq!(value(header, "x"), None);
        assert_eq!(value("__Host-x=", "__Host-x"), None);
        assert_eq!(value("", "__Host-x"), None);
    }

    #[test]
    fn every_cookie_is_host_only_secure_http_only_and_lax() {
        assert_eq!(
            set("__Host-x", "v", 600),
            "__Host-x=v; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"
        );
        assert!(set("__Host-x", "", 0).ends_with("Max-Age=0"));
    }
}
