//! Re-authorization into the same authid: the holder of an authid logs in at
//! the provider again and the *same* authid works again, so every backup job
//! keeps its configuration.
//!
//! The rule that makes it safe: the new login must be the same provider
//! account as the one the grant was made with (`crate::account`), or nothing
//! changes. Otherwise a leaked authid would let its finder re-point its
//! owner's future backups into the finder's own storage. Grants that recorded
//! no account (minted before the broker recorded it, moved in from
//! oauth-handler, or of a provider that names none) cannot be re-authorized in
//! place: the user is told so and offered a new authid instead.
//!
//! The shell (`shell::routes::reauthorize`, the callback's
//! [`crate::login::LoginEnding::Reauthorize`]) does the I/O; the decisions
//! are here: which grants may be re-authorized ([`check`]), what the new
//! grant is ([`reauthorized`]), and the status page's ticket ([`Ticket`]).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::grant::Grant;
use crate::pages::{escape, layout, Page};
use crate::providers::{AccountSource, LoginKind, Provider};
use crate::seal::{Pending, Sealed, ServerKeys};

/// The page a user re-authorizes on (every "re-authorize" answer names it).
pub const PATH: &str = crate::error::REAUTHORIZE_PATH;

/// Why a grant cannot be re-authorized in place, or why a login did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The grant recorded no account: minted before the broker recorded it,
    /// or moved in from oauth-handler.
    NotRecorded,
    /// The provider names no stable account within the scopes the broker
    /// asks for ([`AccountSource::None`]).
    ProviderNamesNone,
    /// Jottacloud's CLI-token login: a new CLI token makes a new authid.
    CliToken,
    /// This broker no longer offers the grant's provider.
    NotOffered,
    /// A pass-through (v2) authid: the broker stores nothing to re-authorize.
    PassThrough,
    /// The new login's account could not be learned (the provider's answer
    /// lacked it, or its account endpoint failed): nothing changed.
    AccountUnknown,
    /// The new login is another account: nothing changed.
    DifferentAccount,
}

impl Refusal {
    /// Why, in plain words, and what to do instead.
    pub fn what(self) -> &'static str {
        match self {
            Refusal::NotRecorded => {
                "this authid was made before the broker recorded which account a login was \
                 made with (or was moved in from another broker), so it cannot be re-authorized \
                 in place: log in again for a new authid and put it in your backup jobs"
            }
            Refusal::ProviderNamesNone => {
                "this provider does not tell the broker which account a login was made with, \
                 so its authids cannot be re-authorized in place: log in again for a new authid"
            }
            Refusal::CliToken => {
                "a Jottacloud authid is made from a CLI token: make a new CLI token and log in \
                 again for a new authid"
            }
            Refusal::NotOffered => {
                "this broker no longer offers this provider, so nobody can log in to it here: \
                 tell the broker's operator"
            }
            Refusal::PassThrough => {
                "a pass-through (v2) authid carries its refresh token itself and the broker \
                 stores nothing, so it cannot be re-authorized in place: log in again for a new \
                 authid"
            }
            Refusal::AccountUnknown => {
                "the provider did not say which account you logged in as, so nothing was \
                 changed: try again"
            }
            Refusal::DifferentAccount => {
                "you logged in as a different account than the one this authid was made with, \
                 so nothing was changed: log in again as that account (sign out at the \
                 provider first, or use a private window)"
            }
        }
    }

    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::DifferentAccount => "different_account",
            Refusal::AccountUnknown => "account_unknown",
            Refusal::NotRecorded
            | Refusal::ProviderNamesNone
            | Refusal::CliToken
            | Refusal::NotOffered
            | Refusal::PassThrough => "cannot_reauthorize",
        }
    }
}

impl From<Refusal> for BrokerError {
    fn from(r: Refusal) -> BrokerError {
        BrokerError::Conflict {
            code: r.code(),
            what: r.what(),
        }
    }
}

/// Whether the grant `grant` of `provider` may be re-authorized in place.
pub fn check(provider: &Provider, grant: &Grant) -> Result<(), Refusal> {
    if provider.login == LoginKind::CliToken {
        return Err(Refusal::CliToken);
    }
    if provider.account == AccountSource::None {
        return Err(Refusal::ProviderNamesNone);
    }
    if grant.account.is_none() {
        return Err(Refusal::NotRecorded);
    }
    Ok(())
}

/// The grant a re-authorization stores: the new login's `fresh` grant, if
/// its account (`account_id`, as the provider named it) is the one `stored`
/// recorded. The recorded hash is kept as it was (same account).
pub fn reauthorized(
    keys: &ServerKeys,
    provider: &Provider,
    stored: &Grant,
    account_id: Option<&str>,
    mut fresh: Grant,
) -> Result<Grant, Refusal> {
    check(provider, stored)?;
    let recorded = stored.account.as_deref().ok_or(Refusal::NotRecorded)?;
    let id = account_id.ok_or(Refusal::AccountUnknown)?;
    if !keys.same_account(recorded, &provider.id, id) {
        return Err(Refusal::DifferentAccount);
    }
    fresh.account = Some(recorded.to_string());
    Ok(fresh)
}

/// The status page's ticket: the authid the page acts on (re-authorize,
/// revoke), sealed under a key from a cookie set with the page, so the page
/// itself never carries the authid and a copied page is worthless without
/// the browser's cookie. Valid for [`Ticket::TTL_SECS`].
pub struct Ticket;

#[derive(Serialize, Deserialize)]
struct TicketBody {
    authid: String,
    until: i64,
}

impl Ticket {
    pub const COOKIE: &'static str = "__Host-broker-status";
    pub const TTL_SECS: i64 = 600;

    /// The refusal of a missing, expired or foreign ticket.
    pub const INVALID: BrokerError = BrokerError::BadRequest {
        code: "invalid_ticket",
        what: "this status page has expired or belongs to another browser: open the status \
               page again and paste the authid",
    };

    /// Seals `authid` for the holder of the cookie value `cookie`.
    pub fn seal(
        keys: &ServerKeys,
        cookie: &str,
        authid: &str,
        now: i64,
    ) -> Result<String, BrokerError> {
        let body = serde_json::to_vec(&TicketBody {
            authid: authid.to_string(),
            until: now.saturating_add(Self::TTL_SECS),
        })
        .map_err(|_| BrokerError::internal("a ticket did not serialize"))?;
        let sealed = keys.seal_pending(Pending::StatusTicket, cookie, &body)?;
        let json = serde_json::to_vec(&sealed)
            .map_err(|_| BrokerError::internal("a ticket did not serialize"))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    /// The authid in `ticket`, for the holder of `cookie`, until it expires.
    pub fn open(
        keys: &ServerKeys,
        cookie: Option<&str>,
        ticket: &str,
        now: i64,
    ) -> Result<String, BrokerError> {
        let cookie = cookie.ok_or(Self::INVALID)?;
        let sealed: Sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(ticket)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Self::INVALID)?;
        let plain = keys
            .open_pending(Pending::StatusTicket, cookie, &sealed)
            .map_err(|_| Self::INVALID)?;
        let body: TicketBody = serde_json::from_slice(&plain).map_err(|_| Self::INVALID)?;
        if now > body.until {
            return Err(Self::INVALID);
        }
        Ok(body.authid)
    }
}

/// `GET /reauthorize`: the form (the authid is posted, never put in a URL).
pub fn form_page() -> Page {
    let body = format!(
        "<h1>Re-authorize an authid</h1><p>When backups say \"re-authorize\", log in to the \
         provider again here <strong>as the same account</strong>: the same authid then works \
         again in every backup job, unchanged.</p>\
         <form method=\"post\" action=\"{PATH}\"><p><label for=\"authid\">Authid</label>\
         <textarea class=\"authid\" id=\"authid\" name=\"authid\" rows=\"3\" \
         autocomplete=\"off\" spellcheck=\"false\" required></textarea></p><p><button type=\"submit\">Next</button></p></form>\
         <p class=\"muted\"><a href=\"/status\">Check an authid's status first</a></p>"
    );
    layout(200, "Re-authorize", &body, false)
}

/// `POST /reauthorize`: the login is ready; the user continues to the
/// provider by a link (a form's redirect to the provider would be blocked by
/// the page's own CSP `form-action 'self'`).
pub fn continue_page(provider_name: &str, authorize_url: &str) -> Page {
    let name = escape(provider_name);
    let body = format!(
        "<h1>Re-authorize with {name}</h1><p>Log in to {name} as <strong>the same \
         account</strong> this authid was made with, and allow access. A login as another \
         account changes nothing.</p><p><a class=\"button\" id=\"continue\" \
         href=\"{url}\">Continue to {name}</a></p>",
        url = escape(authorize_url),
    );
    layout(200, "Re-authorize", &body, false)
}

/// The callback of a re-authorization that stored the new grant.
pub fn done_page(provider_name: &str) -> Page {
    let body = format!(
        "<h1>Re-authorized</h1><p id=\"reauthorized\">The authid works again with {}: \
         every backup job that uses it keeps its configuration. Nothing else to do.</p>\
         <p><a href=\"/status\">Check its status</a></p>",
        escape(provider_name)
    );
    layout(200, "Re-authorized", &body, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Catalogue;
    use crate::upstream::TokenResponse;

    fn keys() -> ServerKeys {
        ServerKeys::parse("1:0123456789abcdef0123456789abcdef", None).unwrap()
    }

    fn provider(id: &str) -> Provider {
        Catalogue::load(None).unwrap().get(id).cloned().unwrap()
    }

    fn grant(account: Option<String>) -> Grant {
        let r = TokenResponse::parse(br#"{"access_token":"a","refresh_token":"r"}"#).unwrap();
        let mut g = Grant::from_code_exchange(r, 0).unwrap();
        g.account = account;
        g
    }

    #[test]
    fn the_same_account_re_authorizes_and_keeps_its_record() {
        let k = keys();
        let p = provider("box.com");
        let recorded = k.account_hash("box.com", "12345");
        let stored = grant(Some(recorded.clone()));
        let g = reauthorized(&k, &p, &stored, Some("12345"), grant(None)).unwrap();
        assert_eq!(g.account.as_deref(), Some(recorded.as_str()));
    }

    #[test]
    fn another_account_or_an_unknown_one_changes_nothing() {
        let k = keys();
        let p = provider("box.com");
        let stored = grant(Some(k.account_hash("box.com", "12345")));
        assert_eq!(
            reauthorized(&k, &p, &stored, Some("99999"), grant(None)),
            Err(Refusal::DifferentAccount)
        );
        assert_eq!(
            reauthorized(&k, &p, &stored, None, grant(None)),
            Err(Refusal::AccountUnknown)
        );
        // The same id at another provider is another account.
        let other = grant(Some(k.account_hash("dropbox", "12345")));
        assert_eq!(
            reauthorized(&k, &p, &other, Some("12345"), grant(None)),
            Err(Refusal::DifferentAccount)
        );
    }

    #[test]
    fn grants_without_a_recorded_account_and_providers_without_ids_cannot_be_re_authorized() {
        let k = keys();
        assert_eq!(
            check(&provider("box.com"), &grant(None)),
            Err(Refusal::NotRecorded)
        );
        let any = grant(Some(k.account_hash("gcs", "x")));
        assert_eq!(
            check(&provider("gcs"), &any),
            Err(Refusal::ProviderNamesNone)
        );
        assert_eq!(check(&provider("jottacloud"), &any), Err(Refusal::CliToken));
        assert_eq!(check(&provider("dropbox"), &any), Ok(()));
        let e: BrokerError = Refusal::DifferentAccount.into();
        assert_eq!((e.status(), e.code()), (409, "different_account"));
    }

    #[test]
    fn a_ticket_opens_only_with_its_cookie_and_only_until_it_expires() {
        let k = keys();
        let t = Ticket::seal(&k, "cookie-A", "the-authid", 1_000).unwrap();
        assert!(!t.contains("the-authid"));
        assert_eq!(
            Ticket::open(&k, Some("cookie-A"), &t, 1_600).unwrap(),
            "the-authid"
        );
        assert_eq!(
            Ticket::open(&k, Some("cookie-A"), &t, 1_601),
            Err(Ticket::INVALID)
        );
        assert_eq!(
            Ticket::open(&k, Some("cookie-B"), &t, 1_000),
            Err(Ticket::INVALID)
        );
        assert_eq!(Ticket::open(&k, None, &t, 1_000), Err(Ticket::INVALID));
        assert_eq!(
            Ticket::open(&k, Some("cookie-A"), "garbage", 1_000),
            Err(Ticket::INVALID)
        );
    }

    #[test]
    fn account_hashes_survive_a_secret_rotation_and_name_no_account_without_it() {
        let old = keys();
        let recorded = old.account_hash("dropbox", "dbid:A");
        let rotated = ServerKeys::parse(
            "2:fedcba9876543210fedcba9876543210",
            Some("1:0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert!(rotated.same_account(&recorded, "dropbox", "dbid:A"));
        assert!(!rotated.same_account(&recorded, "dropbox", "dbid:B"));
        let other = ServerKeys::parse("1:ffffffffffffffffffffffffffffffff", None).unwrap();
        assert!(!other.same_account(&recorded, "dropbox", "dbid:A"));
        assert!(!old.same_account("garbage", "dropbox", "dbid:A"));
    }
}
