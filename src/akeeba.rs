//! Akeeba Backup's "Custom" OAuth2 helper, spoken by the broker: which Akeeba
//! engine is which provider, how Akeeba's refresh request is read, whether it
//! presents one of our authids or a raw provider refresh token, and the shape
//! of the answer and of the helper's result page. The shell
//! (`src/shell/routes/akeeba.rs`) only wires these to the login and to
//! `crate::shell::tokens`.
//!
//! What the connectors do (Akeeba Engine, `Postproc/Connector/*.php`, in the
//! public copies read for this door; line numbers differ between releases, so
//! each fact cites the statement itself):
//! - Refresh: `OneDriveBusiness.php` (© 2006-2026 copy) `getRefreshUrl()`:
//!   `$this->refreshUrl . (strpos($this->refreshUrl, '?') === false ? '?' : '&')
//!   . 'refresh_token=' . urlencode($this->refreshToken)`, then `&dlid=` only
//!   `if (strpos($refreshUrl, self::helperUrl) === 0)` (akeeba.com's own helper).
//! - Headers: every `fetch()` adds `'Authorization: Bearer ' . $this->accessToken`
//!   (`Dropbox2.php`, `GoogleDrive.php`, `Box.php`; `OneDrive.php`, the parent of
//!   `OneDriveBusiness`, writes `bearer`), and `Dropbox2.php` adds
//!   `'Dropbox-API-Path-Root: ' . $apiRootHeader`, `{".tag": "home"}` by default.
//!   The bearer is the *old* access token: ignored here, never logged.
//! - Box's `fetch($method, $baseUrl, $relativeUrl, …)` builds
//!   `$url = $baseUrl . ltrim($relativeUrl, '/')`; with the refresh URL as both,
//!   the request target is the refresh URL's path followed directly by the whole
//!   refresh URL: [`refresh_engine`] reads both forms.
//! - The answer: every `refreshToken()` keeps the refresh token the answer
//!   carries (the old one only when it has none): `$this->refreshToken =
//!   $refreshResponse['refresh_token'] ?? $this->refreshToken;`. So each answer
//!   hands the profile a successor authid (`tokens::successor`,
//!   docs/storage.md "Successors"): a refresh URL that reached a log is
//!   worthless once the next refresh ran.
//! - Errors: `Dropbox2.php`, `GoogleDrive.php` and `OneDrive.php` `fetch()` never
//!   look at the status of a JSON answer; they throw on
//!   `isset($response['error']) && is_array($response['error'])` (`code`/`message`)
//!   or on `isset($response['error'])` (with `error_description`). `Box.php`
//!   throws `UnexpectedHTTPStatus` on `$lastHttpCode >= 400`, and at a 2xx reads
//!   only an `error` *object*: a 200 carrying `"error":"invalid_grant"` would pass
//!   there as a success without an access token. So a failure is answered with
//!   the broker's own 4xx/5xx status and string `error` and `error_description`
//!   ([`crate::error::BrokerError::json_body`]): every connector reads that as a
//!   failure, and none mistakes it for a success.

use serde_json::{json, Value};

use crate::authid::{parse_authid, ParsedAuthId};
use crate::error::BrokerError;
use crate::pages::{self, escape, Page};
use crate::secret::RefreshToken;

/// One Akeeba Backup post-processing engine this door serves.
#[derive(Debug, PartialEq, Eq)]
pub struct Engine {
    /// The engine's name in Akeeba (and in our paths): `/akeeba/<slug>`.
    pub slug: &'static str,
    /// Our provider id (`crate::providers`).
    pub provider: &'static str,
    /// What the user sees in Akeeba's profile list.
    pub name: &'static str,
}

/// The engines, each mapped to the provider its connector talks to.
pub const ENGINES: &[Engine] = &[
    // `Dropbox2.php`: `rootUrl = 'https://api.dropboxapi.com/2/'`.
    Engine {
        slug: "dropbox",
        provider: "dropbox",
        name: "Dropbox",
    },
    // `Box.php`: Box's API (`uploadUrl = 'https://upload.box.com/api/2.0/'`).
    Engine {
        slug: "box",
        provider: "box.com",
        name: "Box",
    },
    // `GoogleDrive.php`: `uploadUrl = 'https://www.googleapis.com/upload/drive/v3/'`.
    Engine {
        slug: "googledrive",
        provider: "googledrive",
        name: "Google Drive",
    },
    // `OneDriveBusiness.php`: `$rootUrl = 'https://graph.microsoft.com/v1.0/me/'`,
    // Microsoft Graph, the v2.0 endpoint our `onedrivev2` logs in at.
    Engine {
        slug: "onedrivebusiness",
        provider: "onedrivev2",
        name: "OneDrive for Business",
    },
];

/// The engine named `slug`, if this door serves it.
pub fn engine(slug: &str) -> Option<&'static Engine> {
    ENGINES.iter().find(|e| e.slug == slug)
}

/// No such engine (or a path under `/akeeba/` that is not a refresh URL).
pub const UNKNOWN_ENGINE: BrokerError = BrokerError::BadRequest {
    code: "unknown_engine",
    what: "not an Akeeba engine this broker serves (dropbox, box, googledrive, onedrivebusiness)",
};

/// No `refresh_token` in the refresh request.
pub const MISSING_REFRESH_TOKEN: BrokerError = BrokerError::BadRequest {
    code: "missing_refresh_token",
    what: "no refresh_token was sent",
};

/// An authid of another provider than the engine's (e.g. a Box login pasted
/// into a Dropbox profile): its access token would only confuse the engine.
pub const ENGINE_MISMATCH: BrokerError = BrokerError::BadRequest {
    code: "engine_mismatch",
    what: "this refresh token belongs to another provider than this engine's; \
           log in at this engine's Helper URL",
};

/// The refresh URL's path after `/akeeba/`: `<engine>/refresh`, or — Box's
/// doubled request target — `<engine>/refresh` followed directly by the whole
/// refresh URL, `http(s)://<host>[/k/<key>]/akeeba/<engine>/refresh`. Its own
/// query (`?refresh_token=…`) is the request's query either way. Anything else
/// is refused.
pub fn refresh_engine(rest: &str) -> Result<&'static Engine, BrokerError> {
    let (slug, tail) = rest.split_once('/').ok_or(UNKNOWN_ENGINE)?;
    let engine = engine(slug).ok_or(UNKNOWN_ENGINE)?;
    let doubled = tail.strip_prefix("refresh").ok_or(UNKNOWN_ENGINE)?;
    if doubled.is_empty() {
        return Ok(engine);
    }
    let url = doubled
        .strip_prefix("https://")
        .or_else(|| doubled.strip_prefix("http://"))
        .ok_or(UNKNOWN_ENGINE)?;
    // host, then the same refresh path (behind an optional key prefix).
    let path = url.find('/').map(|i| &url[i..]).ok_or(UNKNOWN_ENGINE)?;
    if path.ends_with(&format!("/akeeba/{slug}/refresh")) {
        Ok(engine)
    } else {
        Err(UNKNOWN_ENGINE)
    }
}

/// What Akeeba presented as its refresh token.
pub enum Presented<'a> {
    /// One of our authids: a stored (v1) one, which this door's login hands
    /// out, or a pass-through (v2) one.
    AuthId(&'a str),
    /// A provider's own refresh token (Akeeba's stateless mode, e.g. a token
    /// from another helper): refreshed pass-through, nothing stored.
    Raw(RefreshToken),
}

/// Tells an authid from a raw provider refresh token. Our authids have shapes
/// no provider's token has (`<32 hex>:<secret>`, `v2:<provider>:<token>`):
/// anything that parses as one is one; anything else is the provider's.
pub fn classify(token: Option<&str>) -> Result<Presented<'_>, BrokerError> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(MISSING_REFRESH_TOKEN)?;
    if token.starts_with("v2:") {
        return Ok(Presented::AuthId(token));
    }
    match parse_authid(token) {
        Ok(ParsedAuthId::V1(_)) => Ok(Presented::AuthId(token)),
        _ => Ok(Presented::Raw(RefreshToken::new(token.to_string()))),
    }
}

/// Akeeba's success answer (HTTP 200). `refresh_token` is what the profile
/// must present next time: the same v1 authid, the next v2 authid, or the
/// provider's rotated token; `None` (a v2 token too long for an authid) is
/// sent as `null`, which the connector reads as "keep yours".
pub fn answer(access_token: &str, refresh_token: Option<&str>, expires_in: i64) -> Value {
    json!({
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "error": null,
        "error_description": null,
    })
}

/// Where the user pastes what: the URLs of this broker for one engine.
#[derive(Debug, Clone, Copy)]
pub struct Urls<'a> {
    /// `https://broker.example` (no trailing slash).
    pub origin: &'a str,
    /// Whether the operator set access keys: the URLs then need `/k/<key>`.
    pub gated: bool,
}

impl Urls<'_> {
    /// The Helper URL (what "Authentication – Start Here" opens).
    pub fn helper(&self, engine: &Engine) -> String {
        format!("{}{}/akeeba/{}", self.origin, self.key_part(), engine.slug)
    }

    /// The Refresh URL.
    pub fn refresh(&self, engine: &Engine) -> String {
        format!(
            "{}{}/akeeba/{}/refresh",
            self.origin,
            self.key_part(),
            engine.slug
        )
    }

    fn key_part(&self) -> &'static str {
        if self.gated {
            "/k/<your access key>"
        } else {
            ""
        }
    }
}

/// The helper's result page: the access token and the refresh token (a stored
/// v1 authid) with copy buttons, and where each goes in the Akeeba profile.
pub fn result_page(
    engine: &Engine,
    provider_name: &str,
    access_token: &str,
    refresh_token: &str,
    urls: Urls<'_>,
) -> Page {
    let body = format!(
        "<h1>Akeeba Backup: {engine} authorized</h1>\
         <p>Logged in with {provider}. Copy both values into your Akeeba Backup profile \
         (Configuration, Post-processing engine <strong>{engine}</strong>). They are shown \
         only once.</p>\
         <h2><label for=\"access-token\">Access Token</label></h2>\
         <textarea class=\"authid\" id=\"access-token\" readonly rows=\"{at_rows}\" \
         spellcheck=\"false\">{at}</textarea>\
         <p><button type=\"button\" id=\"copy-access-token\" data-copy=\"access-token\">\
         Copy Access Token</button></p>\
         <h2><label for=\"refresh-token\">Refresh Token</label></h2>\
         <textarea class=\"authid\" id=\"refresh-token\" readonly rows=\"3\" \
         spellcheck=\"false\">{rt}</textarea>\
         <p><button type=\"button\" id=\"copy-refresh-token\" data-copy=\"refresh-token\">\
         Copy Refresh Token</button></p>\
         <h2>Where they go</h2><ol>\
         <li>Set the profile's OAuth2 helper to <strong>Custom</strong>.</li>\
         <li><strong>Helper URL</strong>: <code>{helper}</code></li>\
         <li><strong>Refresh URL</strong>: <code>{refresh}</code></li>\
         <li><strong>Access Token</strong>: the first value above.</li>\
         <li><strong>Refresh Token</strong>: the second value above.</li></ol>\
         <p class=\"muted\">The Refresh Token is this broker's key to your {provider} \
         authorization, not {provider}'s own token: that one stays sealed here, and a new one \
         {provider} issues is kept here too, so the profile never needs updating. Keep it \
         secret. You can revoke it on the <a href=\"/revoke\">revoke page</a>.</p>",
        engine = escape(engine.name),
        provider = escape(provider_name),
        at = escape(access_token),
        // The fallback height where `field-sizing` is unknown: about 30
        // characters a line on a phone.
        at_rows = access_token.len().div_ceil(30).clamp(2, 12),
        rt = escape(refresh_token),
        helper = escape(&urls.helper(engine)),
        refresh = escape(&urls.refresh(engine)),
    );
    pages::copy_page("Akeeba Backup tokens", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "0123456789abcdef0123456789abcdef:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde";

    #[test]
    fn each_engine_maps_to_the_provider_its_connector_talks_to() {
        let map: Vec<_> = ENGINES.iter().map(|e| (e.slug, e.provider)).collect();
        assert_eq!(
            map,
            [
                ("dropbox", "dropbox"),
                ("box", "box.com"),
                ("googledrive", "googledrive"),
                ("onedrivebusiness", "onedrivev2"),
            ]
        );
        assert!(engine("onedrive").is_none(), "only the engines listed");
    }

    #[test]
    fn the_plain_refresh_path_names_its_engine() {
        for e in ENGINES {
            assert_eq!(refresh_engine(&format!("{}/refresh", e.slug)), Ok(e));
        }
    }

    #[test]
    fn boxs_doubled_request_target_is_read_like_the_plain_one() {
        // Box.php fetch(): base URL + the whole refresh URL.
        for (rest, ok) in [
            ("box/refreshhttps://broker.example/akeeba/box/refresh", true),
            ("box/refreshhttp://127.0.0.1:8787/akeeba/box/refresh", true),
            (
                "box/refreshhttps://b.example/k/key1/akeeba/box/refresh",
                true,
            ),
            ("box/refreshhttps://b.example/akeeba/dropbox/refresh", false),
            ("box/refreshftp://b.example/akeeba/box/refresh", false),
            ("box/refreshhttps://b.example", false),
            ("box/refreshed", false),
            ("box/login", false),
            ("box", false),
            ("nope/refresh", false),
        ] {
            assert_eq!(refresh_engine(rest).is_ok(), ok, "{rest}");
        }
    }

    #[test]
    fn our_authids_are_authids_and_anything_else_is_the_providers_token() {
        assert!(matches!(classify(Some(V1)), Ok(Presented::AuthId(a)) if a == V1));
        assert!(matches!(
            classify(Some("v2:box.com:abc")),
            Ok(Presented::AuthId(_))
        ));
        // Google's, Box's and Microsoft's token shapes are raw tokens.
        for raw in [
            "1//0gAbCdEfGhIjKlMnOpQrStUvWxYz-0123456789",
            "Xy12ab34cd56ef78gh90ij12kl34mn56op78qr90st12uv34wx56yz78ab90cd12",
            "M.C105_BAY.0.U.-CpT2abc!def*ghi$",
            // A v1-looking token with a bad key id is not ours either.
            "0123456789ABCDEF0123456789ABCDEF:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        ] {
            match classify(Some(raw)) {
                Ok(Presented::Raw(t)) => assert_eq!(t.secret(), raw),
                _ => panic!("{raw} is a raw token"),
            }
        }
        for missing in [None, Some("")] {
            assert_eq!(classify(missing).err(), Some(MISSING_REFRESH_TOKEN));
        }
    }

    #[test]
    fn a_token_of_another_provider_is_refused_for_an_engine() {
        use crate::providers::same_provider;
        let dropbox = engine("dropbox").unwrap();
        assert!(same_provider(dropbox.provider, "dropbox"));
        assert!(!same_provider(dropbox.provider, "box.com"));
        assert!(
            same_provider(engine("box").unwrap().provider, "box"),
            "alias"
        );
    }

    #[test]
    fn a_success_has_both_tokens_and_null_errors() {
        let v = answer("AT", Some(V1), 3599);
        assert_eq!(v["access_token"], "AT");
        assert_eq!(v["refresh_token"], V1);
        assert_eq!(v["expires_in"], 3599);
        assert!(v["error"].is_null() && v["error_description"].is_null());
        assert!(answer("AT", None, 1)["refresh_token"].is_null());
    }

    #[test]
    fn every_failure_is_a_4xx_or_5xx_with_string_error_and_description() {
        // Box.php throws only on status >= 400 or an error object; the others on
        // a string `error`: the broker's error answer satisfies both.
        for e in [
            MISSING_REFRESH_TOKEN,
            UNKNOWN_ENGINE,
            BrokerError::UnknownAuthId,
            BrokerError::ProviderFailed,
            BrokerError::ReauthorizationRequired {
                broker_url: "https://b.example/".into(),
            },
        ] {
            assert!(e.status() >= 400, "{e:?}");
            let v: Value = serde_json::from_str(&e.json_body()).unwrap();
            assert!(v["error"].is_string() && v["error_description"].is_string());
        }
    }

    #[test]
    fn the_result_page_shows_both_tokens_with_copy_buttons_and_the_profile_fields() {
        let urls = Urls {
            origin: "https://b.example",
            gated: false,
        };
        let p = result_page(engine("box").unwrap(), "Box", "AT<1>", V1, urls);
        assert_eq!(p.status, 200);
        assert!(p.html.contains(">AT&lt;1&gt;</textarea>"), "escaped");
        assert!(p.html.contains(&format!(">{V1}</textarea>")));
        assert!(p.html.contains("<label for=\"access-token\">"));
        assert!(p.html.contains("<label for=\"refresh-token\">"));
        assert!(p.html.contains("data-copy=\"access-token\""));
        assert!(p.html.contains("data-copy=\"refresh-token\""));
        assert!(p.html.contains("https://b.example/akeeba/box/refresh"));
        assert!(p.html.contains("https://b.example/akeeba/box</code>"));
        assert!(p.html.contains("Custom"));
        let gated = Urls {
            gated: true,
            ..urls
        };
        assert!(gated
            .refresh(engine("dropbox").unwrap())
            .starts_with("https://b.example/k/"));
    }
}
