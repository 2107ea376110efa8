//! The handler move: grants move lazily from an operator's Duplicati
//! oauth-handler (`OAUTH_HANDLER_URL`, `OAUTH_HANDLER_API_KEY`). The first
//! refresh of an authid in oauth-handler's spelling
//! ([`AuthIdFormat::OauthHandler`]) that is not stored here asks the old
//! service's `GET <url>/export` (main.py `export`, L922-998) and seals the
//! grant here under the same authid, so no user logs in again.
//!
//! Its answers ([`read_export`]): only a 200 moves a grant; 404 `No such key`
//! and 400 `Invalid authid password` mean unknown there too (our 401); 403 is
//! the operator's misconfiguration, 5xx or no answer a transient fault (both
//! retryable, nothing stored). Bodies are never echoed or logged. The cost is
//! bounded: the URL must be https (http only to a loopback host), each call
//! spends the client's `RL_MOVE_PER_IP`, and an authid the old service did
//! not know is answered from memory for [`UNKNOWN_MEMO_MS`]
//! ([`Export::unknown_key`]). For the operator: `docs/operate.md`, "Moving
//! from Duplicati's own service".

use crate::authid::{AuthId, AuthIdFormat};
use crate::error::BrokerError;
use crate::grant::Grant;

/// The old service as the operator configured it.
pub struct Source {
    /// `<OAUTH_HANDLER_URL>/export`.
    pub export_url: String,
    api_key: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("export_url", &self.export_url)
            .finish_non_exhaustive()
    }
}

const MISCONFIGURED: BrokerError = BrokerError::Misconfigured {
    what: "OAUTH_HANDLER_URL must be an https URL (plain http only to a loopback host: \
           127.0.0.1, [::1], localhost), set together with OAUTH_HANDLER_API_KEY",
};

/// Whether the export call may go to `url`: https, or plain http to a
/// loopback host (a local oauth-handler, the tests' fake). Anywhere else,
/// plain http would send the operator's API key and the moved refresh tokens
/// over the network in the clear.
fn transport_protects_secrets(url: &url::Url) -> bool {
    match (url.scheme(), url.host()) {
        ("https", _) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        _ => false,
    }
}

impl Source {
    /// Reads the two settings. Neither set: `None` (no handler move). One
    /// without the other, a URL with a query, or a URL that is not https
    /// (or http to a loopback host): misconfigured.
    pub fn from_settings(
        url: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Option<Source>, BrokerError> {
        let (url, api_key) = match (url, api_key) {
            (None, None) => return Ok(None),
            (Some(u), Some(k)) => (u.trim(), k.trim()),
            _ => return Err(MISCONFIGURED),
        };
        let parsed = url::Url::parse(url).map_err(|_| MISCONFIGURED)?;
        if !transport_protects_secrets(&parsed) || parsed.query().is_some() {
            return Err(MISCONFIGURED);
        }
        Ok(Some(Source {
            export_url: format!("{}/export", url.trim_end_matches('/')),
            api_key: api_key.to_string(),
        }))
    }

    /// The export call for `authid`.
    pub fn export(&self, authid: &AuthId) -> Export {
        Export {
            headers: [
                ("X-APIKey", self.api_key.clone()),
                // As the user pasted it: oauth-handler splits at the first `:` and
                // looks the keyid up as written (main.py L953-963).
                ("X-AuthID", authid.expose()),
                ("Accept", "application/json".to_string()),
            ],
            unknown_key: unknown_key(authid),
        }
    }
}

/// One export call, for one authid.
pub struct Export {
    /// Its headers (main.py `export` reads `X-APIKey` and `X-AuthID`; both
    /// are secrets: never log them).
    pub headers: [(&'static str, String); 3],
    /// The key an "unknown" answer for this authid is remembered under.
    pub unknown_key: String,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").finish_non_exhaustive()
    }
}

/// How long an authid the old service did not know is answered "unknown"
/// without asking it again: long enough to absorb a client's retries and a
/// flood of one made-up authid, short enough that a grant the operator puts
/// into the old service is found a minute later.
pub const UNKNOWN_MEMO_MS: u64 = 60_000;
/// At most this many unknown authids are remembered per isolate.
pub const UNKNOWN_MEMO_CAP: usize = 1024;

/// The memory key of `authid`'s "unknown" answer: a hash of the whole authid,
/// never the authid. The whole of it: oauth-handler answers "unknown" for a
/// known keyid with a wrong password too (400), and a key of the keyid alone
/// would let anyone who knows a keyid keep its owner's right password from
/// being asked for.
fn unknown_key(authid: &AuthId) -> String {
    crate::digest::domain_hex("oauth-broker/v1/move-unknown|", &authid.expose())
}

/// Whether an authid this broker does not know may be asked for at the old
/// service: only oauth-handler's own spelling (oauth-server's and ours were
/// never issued by it).
pub fn may_move(authid: &AuthId) -> bool {
    authid.format() == AuthIdFormat::OauthHandler
}

/// What the old service's answer means.
#[derive(Debug)]
pub enum Exported {
    /// The grant: its provider (`service`) and tokens, the access token
    /// treated as expired (the first use refreshes).
    Grant { service: String, grant: Grant },
    /// Not there, or not this authid's: the authid is unknown.
    Unknown,
}

/// Classifies the old service's answer to an export call.
pub fn read_export(status: u16, body: &[u8]) -> Result<Exported, BrokerError> {
    match status {
        200 => match Grant::import(body) {
            Ok((service, grant)) => Ok(Exported::Grant { service, grant }),
            // A 200 whose body is not a grant: the old service is broken.
            Err(_) => Err(BrokerError::ProviderFailed),
        },
        400 | 404 => Ok(Exported::Unknown),
        401 | 403 => Err(BrokerError::Misconfigured {
            what: "the oauth-handler refused OAUTH_HANDLER_API_KEY",
        }),
        _ => Err(BrokerError::ProviderFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authid::{parse_authid, ParsedAuthId};

    fn authid(s: &str) -> AuthId {
        match parse_authid(s) {
            Ok(ParsedAuthId::V1(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    const HANDLER: &str = "0123456789abcdef0123456789abcd:a1A!b2B-c3C_d4D.e5E!f";

    #[test]
    fn both_settings_or_neither() {
        assert!(Source::from_settings(None, None).unwrap().is_none());
        let s = Source::from_settings(Some("https://old.example/"), Some("k".repeat(12).as_str()))
            .unwrap()
            .unwrap();
        assert_eq!(s.export_url, "https://old.example/export");
        assert!(!format!("{s:?}").contains("kkkk"));
        for (url, key) in [
            (Some("https://old.example"), None),
            (None, Some("key")),
            (Some("ftp://old.example"), Some("key")),
            (Some("not a url"), Some("key")),
            (Some("https://old.example/?key=x"), Some("key")),
        ] {
            assert_eq!(
                Source::from_settings(url, key).unwrap_err().code(),
                "server_misconfigured",
                "{url:?}"
            );
        }
    }

    #[test]
    fn the_oauth_handler_is_reached_over_https_or_on_loopback_only() {
        let key = Some("0123456789");
        for ok in [
            "https://old.example",
            "https://old.example:8443/handler/",
            "https://203.0.113.9/h",
            "http://127.0.0.1:9/h",
            "http://127.0.0.2/h",
            "http://[::1]:8080/",
            "http://localhost:8080/h",
            "http://LOCALHOST/h",
        ] {
            let s = Source::from_settings(Some(ok), key);
            assert!(matches!(s, Ok(Some(_))), "{ok}: {s:?}");
        }
        for bad in [
            "http://old.example/h",
            "http://203.0.113.9/h",
            "http://[2001:db8::1]/h",
            "http://localhost.old.example/h",
            "http://127.0.0.1.old.example/h",
            "http://[::ffff:203.0.113.9]/h",
            "ws://127.0.0.1/h",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                Source::from_settings(Some(bad), key).unwrap_err().code(),
                "server_misconfigured",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_export_call_carries_the_api_key_and_the_authid_as_given() {
        let s = Source::from_settings(Some("http://127.0.0.1:9/h"), Some("0123456789"))
            .unwrap()
            .unwrap();
        let e = s.export(&authid(HANDLER));
        assert_eq!(e.headers[0], ("X-APIKey", "0123456789".to_string()));
        assert_eq!(e.headers[1], ("X-AuthID", HANDLER.to_string()));
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("0123456789") && !shown.contains("a1A!"),
            "{shown}"
        );
    }

    #[test]
    fn an_unknown_answer_is_remembered_under_a_hash_of_the_whole_authid() {
        let s = Source::from_settings(Some("https://old.example"), Some("0123456789"))
            .unwrap()
            .unwrap();
        let key = s.export(&authid(HANDLER)).unknown_key;
        assert_eq!(key.len(), 64);
        assert!(!key.contains("0123456789abcdef"), "not the keyid");
        assert_eq!(key, s.export(&authid(HANDLER)).unknown_key);
        // Same keyid, another password: another key.
        let (keyid, _) = HANDLER.split_once(':').unwrap();
        let other = format!("{keyid}:b1A!b2B-c3C_d4D.e5E!f");
        assert_ne!(key, s.export(&authid(&other)).unknown_key);
    }

    #[test]
    fn only_oauth_handler_authids_are_asked_for() {
        assert!(may_move(&authid(HANDLER)));
        let server = format!("{}:{}", "ab".repeat(16), "a1A!".repeat(8));
        assert!(!may_move(&authid(&server)));
        assert!(!may_move(
            &AuthId::generate(crate::ids::Shard::FIRST).unwrap()
        ));
    }

    #[test]
    fn the_old_services_answers_mean_what_its_source_says() {
        let body = br#"{"access_token":"at","refresh_token":"rt","expires_in":3600,"token_type":"Bearer","user_id":"u","service":"googledrive"}"#;
        match read_export(200, body).unwrap() {
            Exported::Grant { service, grant } => {
                assert_eq!(service, "googledrive");
                assert_eq!(grant.refresh_token().unwrap().secret(), "rt");
                assert!(grant.cached_access_token(0).is_none(), "refreshes first");
            }
            other => panic!("{other:?}"),
        }
        // main.py: 404 "No such key", 400 "Invalid authid password".
        assert!(matches!(
            read_export(404, b"{}").unwrap(),
            Exported::Unknown
        ));
        assert!(matches!(
            read_export(400, b"{}").unwrap(),
            Exported::Unknown
        ));
        assert_eq!(read_export(403, b"{}").unwrap_err().status(), 500);
        assert_eq!(read_export(500, b"{}").unwrap_err().status(), 502);
        assert_eq!(read_export(200, b"<html>").unwrap_err().status(), 502);
        // No refresh token: not a grant.
        assert_eq!(
            read_export(200, br#"{"access_token":"at","service":"x"}"#)
                .unwrap_err()
                .status(),
            502
        );
    }
}
