//! The headers every response carries, decided in one place.

use crate::error::BrokerError;
use crate::pages;

/// Security and error headers for a response with `content_type`, served over
/// https or not, failing with `err` or not.
///
/// - `Cache-Control: no-store` everywhere: any response may carry or lead to a secret.
/// - `nosniff`, `X-Frame-Options: DENY`, and `Referrer-Policy: no-referrer`
///   (callback URLs carry codes; RFC 9700 §4.2.4).
/// - Pages get the strict CSP of [`pages::content_security_policy`].
/// - HSTS only over https (it is ignored, and misleading, over http).
/// - Errors carry `X-Reason` (what Duplicati shows), `X-Error-Code`, and
///   `Retry-After` or `WWW-Authenticate` where there is one.
pub fn response_headers(
    content_type: &str,
    https: bool,
    err: Option<&BrokerError>,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("Content-Type", content_type.to_string()),
        ("Cache-Control", "no-store".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
        ("Referrer-Policy", "no-referrer".to_string()),
        ("X-Frame-Options", "DENY".to_string()),
    ];
    if content_type.starts_with("text/html") {
        h.push(("Content-Security-Policy", pages::content_security_policy()));
    }
    if https {
        h.push((
            "Strict-Transport-Security",
            "max-age=31536000; includeSubDomains".to_string(),
        ));
    }
    if let Some(e) = err {
        h.push(("X-Reason", e.reason()));
        h.push(("X-Error-Code", e.code().to_string()));
        if let Some(secs) = e.retry_after() {
            h.push(("Retry-After", secs.to_string()));
        }
        if let Some(challenge) = e.www_authenticate() {
            h.push(("WWW-Authenticate", challenge.to_string()));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(h: &'a [(&'static str, String)], k: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_response_is_no_store_nosniff_no_referrer_unframeable() {
        for ct in ["application/json", "text/html; charset=utf-8", "text/plain"] {
            let h = response_headers(ct, false, None);
            assert_eq!(get(&h, "Cache-Control"), Some("no-store"));
            assert_eq!(get(&h, "X-Content-Type-Options"), Some("nosniff"));
            assert_eq!(get(&h, "Referrer-Policy"), Some("no-referrer"));
            assert_eq!(get(&h, "X-Frame-Options"), Some("DENY"));
        }
    }

    #[test]
    fn pages_get_the_csp_and_https_gets_hsts() {
        let page = response_headers("text/html; charset=utf-8", true, None);
        assert!(get(&page, "Content-Security-Policy").is_some_and(|c| c.contains("'none'")));
        assert!(get(&page, "Strict-Transport-Security").is_some_and(|v| v.starts_with("max-age=")));
        let plain = response_headers("application/json", false, None);
        assert!(get(&plain, "Content-Security-Policy").is_none());
        assert!(get(&plain, "Strict-Transport-Security").is_none());
    }

    #[test]
    fn errors_carry_reason_code_and_retry_after() {
        let e = BrokerError::RateLimited { retry_after: 60 };
        let h = response_headers("application/json", false, Some(&e));
        assert_eq!(get(&h, "X-Error-Code"), Some("rate_limited"));
        assert_eq!(get(&h, "Retry-After"), Some("60"));
        assert!(get(&h, "X-Reason").is_some_and(|r| !r.is_empty()));
        let h = response_headers("application/json", false, Some(&BrokerError::NotFound));
        assert!(get(&h, "Retry-After").is_none());
        assert!(get(&h, "WWW-Authenticate").is_none());
    }

    #[test]
    fn an_unknown_authid_is_answered_with_a_challenge_on_both_surfaces() {
        for ct in ["application/json", "text/html; charset=utf-8"] {
            let h = response_headers(ct, true, Some(&BrokerError::UnknownAuthId));
            assert_eq!(
                get(&h, "WWW-Authenticate"),
                Some(r#"X-AuthID realm="oauth-broker""#)
            );
            assert_eq!(get(&h, "X-Error-Code"), Some("unknown_authid"));
        }
    }
}
