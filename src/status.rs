//! What the holder of an authid may learn about its grant (`/status`): the
//! page (the authid pasted into a form, never a URL) and the machine answer
//! (`GET /status` with `X-AuthID`, JSON). Provider, when authorized, the last
//! successful refresh, the state (active, or needing re-authorization since
//! when and why), by when a provider that forgets idle grants needs it used
//! again, and whether it can be re-authorized in place (`crate::reauthorize`).
//!
//! Only the authid's holder learns anything: the shell opens the grant with
//! the authid before anything is shown (`StoredGrant::facts`). Nothing that
//! names the account is shown (the broker keeps only a keyed hash of it).

use serde_json::{json, Value};

use crate::pages::{escape, layout, utc_minute, Page};
use crate::providers::idle_limit_days;
use crate::reauthorize::{Refusal, PATH as REAUTHORIZE_PATH};
use crate::refresh::Status;

/// The row facts of a stored grant, opened by its holder (`StoredGrant::facts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub provider: String,
    pub status: Status,
    pub created_at: i64,
    /// The last upstream refresh, successful or not, and how it ended.
    pub last_refresh_at: Option<i64>,
    pub last_outcome: Option<String>,
    /// The last successful refresh (or re-authorization).
    pub last_ok_at: Option<i64>,
}

/// What the status answers say about one stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub provider: String,
    pub provider_name: String,
    pub facts: Facts,
    /// `Ok` if a login of the same account re-authorizes it in place.
    pub reauthorize: Result<(), Refusal>,
}

impl View {
    fn needs_reauthorization(&self) -> bool {
        self.facts.status == Status::ReauthRequired
    }

    /// Since when it needs re-authorization: the refresh the provider refused.
    fn since(&self) -> Option<i64> {
        self.needs_reauthorization()
            .then(|| self.facts.last_refresh_at.unwrap_or(self.facts.created_at))
    }

    /// When the refresh token was last used successfully (the login itself
    /// if never refreshed since): where a provider's idle clock starts.
    fn last_use(&self) -> i64 {
        self.facts.last_ok_at.unwrap_or(self.facts.created_at)
    }

    /// By when it must be used again, where the provider forgets idle grants.
    fn use_before(&self) -> Option<i64> {
        if self.needs_reauthorization() {
            return None;
        }
        idle_limit_days(&self.provider).map(|d| self.last_use().saturating_add(d * 86_400))
    }

    fn reason(&self) -> Option<(&'static str, &'static str)> {
        self.needs_reauthorization()
            .then_some(match self.facts.last_outcome.as_deref() {
                Some("invalid_grant") | None => (
                    "invalid_grant",
                    "The provider refused the stored authorization (invalid_grant). Usually the \
                 account's password changed, the app's access was removed in the account, or \
                 the authorization went unused for longer than the provider keeps it.",
                ),
                Some(_) => ("refused", "The provider refused the stored authorization."),
            })
    }
}

/// `GET /status` with `X-AuthID`: the JSON answer. `origin` is the broker's.
pub fn json(v: &View, origin: &str) -> Value {
    let (reason, description) = v.reason().unzip();
    json!({
        "authid_kind": "stored",
        "provider": v.provider,
        "provider_name": v.provider_name,
        "state": if v.needs_reauthorization() { "reauthorization_required" } else { "active" },
        "authorized_at": v.facts.created_at,
        "last_refresh_ok_at": v.facts.last_ok_at,
        "reauthorization_required_since": v.since(),
        "reason": reason,
        "reason_description": description,
        "idle_limit_days": idle_limit_days(&v.provider),
        "use_before": v.use_before(),
        "reauthorize": reauthorize_json(v.reauthorize, origin),
    })
}

fn reauthorize_json(r: Result<(), Refusal>, origin: &str) -> Value {
    match r {
        Ok(()) => json!({ "in_place": true, "url": format!("{origin}{REAUTHORIZE_PATH}") }),
        Err(why) => json!({ "in_place": false, "code": why.code(), "why": why.what() }),
    }
}

/// What a pass-through (v2) authid is, for both answers.
const PASS_THROUGH: &str = "This is a pass-through (v2) authid: it carries the provider's \
    refresh token itself and the broker stores nothing about it, so the broker cannot say when \
    it was authorized or last used, nor re-authorize it in place. If backups using it fail \
    with \"re-authorize\", log in again for a new one.";

/// The JSON answer for a pass-through (v2) authid of `provider`.
pub fn pass_through_json(provider: &str, provider_name: Option<&str>) -> Value {
    json!({
        "authid_kind": "pass_through",
        "provider": provider,
        "provider_name": provider_name,
        "stored": false,
        "note": PASS_THROUGH,
    })
}

/// The JSON answer for an authid replaced by its successor (Akeeba Backup's
/// refresh URL hands out a new one with every answer).
pub fn replaced_json() -> Value {
    json!({
        "authid_kind": "stored",
        "state": "replaced",
        "note": REPLACED,
    })
}

const REPLACED: &str = "This authid was replaced by a newer one that its last refresh \
    handed out (Akeeba Backup's refresh URL does this on every refresh), and the newer one has \
    been used since. Check the status of the authid your backup uses now.";

/// `GET /status`: the form. `action` is where it posts.
pub fn form(action: &str) -> Page {
    let body = format!(
        "<h1>Authid status</h1><p>See whether an authid still works, when it was last used, \
         and re-authorize or revoke it. Paste the authid your backup uses; it is sent in the \
         form, never in a URL.</p>\
         <form method=\"post\" action=\"{action}\"><p><label for=\"authid\">Authid</label>\
         <textarea class=\"authid\" id=\"authid\" name=\"authid\" rows=\"3\" \
         autocomplete=\"off\" spellcheck=\"false\" required></textarea></p><p><button type=\"submit\">Show status</button></p>\
         </form>",
        action = escape(action),
    );
    layout(200, "Authid status", &body, false)
}

/// `POST /status`: the status page. `ticket` stands for the authid in the
/// page's own forms (`crate::reauthorize::Ticket`).
pub fn page(v: &View, ticket: &str) -> Page {
    let name = escape(&v.provider_name);
    let state = match (v.since(), v.reason()) {
        (Some(since), Some((_, words))) => format!(
            "<strong>Needs re-authorization</strong> since {} UTC. {}",
            utc_minute(since).trim_end_matches(" UTC"),
            escape(words)
        ),
        _ => "<strong>Active</strong>: backups using it get access tokens.".to_string(),
    };
    let last = match v.facts.last_ok_at {
        Some(t) => utc_minute(t),
        None => "not since it was authorized".to_string(),
    };
    let idle = match (v.use_before(), idle_limit_days(&v.provider)) {
        (Some(by), Some(days)) => format!(
            "<dt>Use before</dt><dd id=\"use-before\">{} ({name} forgets an authorization \
             unused for {days} days; every backup run uses it)</dd>",
            utc_minute(by)
        ),
        _ => String::new(),
    };
    let ticket = escape(ticket);
    let reauthorize = match v.reauthorize {
        Ok(()) => format!(
            "<h2>Re-authorize</h2><p>Log in to {name} again <strong>as the same account</strong>: \
             this authid then works again in every backup job, unchanged. A login as another \
             account changes nothing.</p><form method=\"post\" action=\"{REAUTHORIZE_PATH}\">\
             <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
             <p><button type=\"submit\" id=\"reauthorize\">Re-authorize with {name}</button></p>\
             </form>"
        ),
        Err(why) => format!(
            "<h2>Re-authorize</h2><p id=\"no-reauthorize\">This authid cannot be re-authorized \
             in place: {} (<code>{}</code>).</p><p><a class=\"button\" href=\"/\">Log in for a new \
             authid</a></p>",
            escape(why.what()),
            why.code()
        ),
    };
    let body = format!(
        "<h1>Authid status</h1><dl><dt>Provider</dt><dd id=\"provider\">{name}</dd>\
         <dt>State</dt><dd id=\"state\">{state}</dd>\
         <dt>Authorized</dt><dd id=\"authorized\">{authorized}</dd>\
         <dt>Last successful refresh</dt><dd id=\"last-ok\">{last}</dd>{idle}</dl>\
         {reauthorize}\
         <h2>Revoke</h2><p>Revoking deletes the stored authorization and asks {name} to revoke \
         it; backups using this authid stop working.</p>\
         <form method=\"post\" action=\"/revoked\"><input type=\"hidden\" name=\"ticket\" \
         value=\"{ticket}\"><p><input type=\"checkbox\" id=\"confirm-revoke\" name=\"confirm\" \
         value=\"yes\" required> <label for=\"confirm-revoke\">I understand that backups using \
         this authid stop working</label></p><p><button type=\"submit\" id=\"revoke\">Revoke \
         this authid</button></p></form>",
        authorized = utc_minute(v.facts.created_at),
    );
    layout(200, "Authid status", &body, false)
}

/// `POST /status` for a pass-through (v2) or replaced authid: what it is.
pub fn note_page(pass_through: bool) -> Page {
    let words = if pass_through { PASS_THROUGH } else { REPLACED };
    let body = format!(
        "<h1>Authid status</h1><p id=\"note\">{}</p><p><a href=\"/status\">Check another \
         authid</a></p>",
        escape(words)
    );
    layout(200, "Authid status", &body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: Status, outcome: Option<&str>, reauth: Result<(), Refusal>) -> View {
        View {
            provider: "box.com".into(),
            provider_name: "Box.com".into(),
            facts: Facts {
                provider: "box.com".into(),
                status,
                created_at: 1_000_000,
                last_refresh_at: Some(2_000_000),
                last_outcome: outcome.map(str::to_string),
                last_ok_at: Some(1_500_000),
            },
            reauthorize: reauth,
        }
    }

    #[test]
    fn an_active_grant_says_when_it_must_be_used_by_its_providers_idle_limit() {
        let v = view(Status::Active, Some("ok"), Ok(()));
        let j = json(&v, "https://b.example");
        assert_eq!(j["state"], "active");
        assert_eq!(j["last_refresh_ok_at"], 1_500_000);
        assert_eq!(j["use_before"], 1_500_000 + 60 * 86_400);
        assert_eq!(j["reauthorization_required_since"], Value::Null);
        assert_eq!(j["reauthorize"]["url"], "https://b.example/reauthorize");
    }

    #[test]
    fn a_refused_grant_says_since_when_why_and_that_it_can_be_re_authorized() {
        let v = view(Status::ReauthRequired, Some("invalid_grant"), Ok(()));
        let j = json(&v, "https://b.example");
        assert_eq!(j["state"], "reauthorization_required");
        assert_eq!(j["reauthorization_required_since"], 2_000_000);
        assert_eq!(j["reason"], "invalid_grant");
        assert_eq!(j["use_before"], Value::Null);
        let p = page(&v, "T");
        assert!(p.html.contains("Needs re-authorization"), "{}", p.html);
        assert!(p.html.contains("action=\"/reauthorize\""));
        assert!(p.html.contains("name=\"ticket\" value=\"T\""));
    }

    #[test]
    fn a_grant_that_cannot_be_re_authorized_says_so_and_offers_a_new_authid() {
        let v = view(Status::ReauthRequired, None, Err(Refusal::NotRecorded));
        let j = json(&v, "https://b.example");
        assert_eq!(j["reauthorize"]["in_place"], false);
        assert_eq!(j["reauthorize"]["code"], "cannot_reauthorize");
        let p = page(&v, "T");
        assert!(p.html.contains("cannot be re-authorized in place"));
        assert!(!p.html.contains("action=\"/reauthorize\""));
        assert!(p.html.contains("href=\"/\""));
    }

    #[test]
    fn every_field_of_the_form_has_a_visible_label_and_revoking_asks_for_confirmation() {
        assert!(form("/status").html.contains("<label for=\"authid\">"));
        let p = page(&view(Status::Active, None, Ok(())), "T");
        assert!(p.html.contains("<label for=\"confirm-revoke\">"));
        assert!(p.html.contains("required"));
    }

    #[test]
    fn a_pass_through_authid_is_said_to_be_one_and_nothing_else() {
        let j = pass_through_json("dropbox", Some("Dropbox"));
        assert_eq!(j["authid_kind"], "pass_through");
        assert_eq!(j["stored"], false);
        assert!(note_page(true).html.contains("pass-through"));
    }
}
