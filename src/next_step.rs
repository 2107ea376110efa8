//! What an error page tells its user to do next: one step per stable error
//! code (a table, [`STEPS`]), and which request starts the failed login again
//! ([`restart_href`]). `crate::pages::error` shows both; the shell only
//! supplies the request it answered.

use crate::request::Params;

/// The one next step an error page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Something the user can retry: a *Try again* link that starts the same
    /// login (or sends the same form) again; the start page where the request
    /// has no login to restart.
    TryAgain,
    /// The broker itself is misconfigured: only its operator can fix it, and
    /// trying again will not help.
    TellOperator,
    /// The request named nothing this broker has (a provider, a page): start
    /// from the start page.
    StartPage,
    /// A re-authorization that changed nothing (another account logged in):
    /// re-authorize again (`crate::reauthorize`), not a new login, which would
    /// make a new authid.
    Reauthorize,
}

/// One row: a stable error code (`BrokerError::code`), what happened in plain
/// words (the page's heading; the error's reason follows it), and the step.
pub struct Row {
    pub code: &'static str,
    pub what: &'static str,
    pub step: Step,
}

const fn row(code: &'static str, what: &'static str, step: Step) -> Row {
    Row { code, what, step }
}

/// The error codes a person meets on a page. A code not listed here is
/// [`DEFAULT`]: *Try again*.
pub const STEPS: &[Row] = &[
    row("access_denied", "Access was not granted", Step::TryAgain),
    row("invalid_state", "This login has expired", Step::TryAgain),
    row(
        "provider_error",
        "The storage provider did not log you in",
        Step::TryAgain,
    ),
    row(
        "provider_timeout",
        "The storage provider did not answer",
        Step::TryAgain,
    ),
    row(
        "missing_code",
        "The storage provider sent no login",
        Step::TryAgain,
    ),
    row(
        "cli_token_rejected",
        "The CLI token was not accepted",
        Step::TryAgain,
    ),
    row("bad_cli_token", "That is not a CLI token", Step::TryAgain),
    row("malformed_authid", "That is not an authid", Step::TryAgain),
    row("unknown_authid", "That authid is unknown", Step::TryAgain),
    row("missing_authid", "No authid was entered", Step::TryAgain),
    row("rate_limited", "Too many requests", Step::TryAgain),
    row(
        "storage_unavailable",
        "The broker is unavailable",
        Step::TryAgain,
    ),
    row("internal_error", "Something went wrong", Step::TryAgain),
    row(
        "provider_misconfigured",
        "The storage provider refused this broker",
        Step::TellOperator,
    ),
    row(
        "server_misconfigured",
        "This broker is misconfigured",
        Step::TellOperator,
    ),
    row(
        "different_account",
        "You logged in as another account",
        Step::Reauthorize,
    ),
    row(
        "account_unknown",
        "The provider did not say which account you are",
        Step::Reauthorize,
    ),
    row(
        "cannot_reauthorize",
        "This authid cannot be re-authorized in place",
        Step::StartPage,
    ),
    row("invalid_ticket", "This page has expired", Step::TryAgain),
    row(
        "not_confirmed",
        "Revoking was not confirmed",
        Step::TryAgain,
    ),
    row(
        "unknown_provider",
        "That storage provider is not offered here",
        Step::StartPage,
    ),
    row("not_found", "There is no such page", Step::StartPage),
    row(
        "method_not_allowed",
        "There is no such page",
        Step::StartPage,
    ),
];

/// The row of a code not in [`STEPS`].
pub const DEFAULT: Row = row("", "Something went wrong", Step::TryAgain);

/// The row for `code`.
pub fn for_code(code: &str) -> &'static Row {
    STEPS.iter().find(|r| r.code == code).unwrap_or(&DEFAULT)
}

/// The link that starts the failed request's login again (or shows its form
/// again), relative to the host, or `None` where the broker cannot restart it
/// (the OAuth 2.0 authorization endpoint: the client starts it). `path` is the
/// request's path without the `/k/<key>` prefix, `base` that prefix (or empty),
/// `rest` what a prefix row matched (`/callback/<provider>`), `query` the
/// request's query: a page reached by `GET` is simply asked for again (without
/// the gate's `key_entered` marker, which would show *Continue* instead);
/// a provider's answer starts the login at the same provider; a form's answer
/// shows the form again.
pub fn restart_href(path: &str, rest: &str, base: &str, query: &Params) -> Option<String> {
    let again = |path: &str, keep: &mut dyn Iterator<Item = &(String, String)>| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, value) in keep {
            q.append_pair(name, value);
            any = true;
        }
        match any {
            true => format!("{base}{path}?{}", q.finish()),
            false => format!("{base}{path}"),
        }
    };
    let mut same = query
        .iter()
        .filter(|(name, _)| name != crate::access::KEY_ENTERED);
    match path {
        "/login" | "/cli-token" | "/device" => Some(again(path, &mut same)),
        _ if path.starts_with("/akeeba/") => Some(again(path, &mut same)),
        _ if path.starts_with("/callback/") && !rest.is_empty() => {
            let id = [("id".to_string(), rest.to_string())];
            Some(again("/login", &mut id.iter()))
        }
        "/revoked" => Some(format!("{base}/revoke")),
        // The form's fields are in the spent body: its provider's button is
        // on the start page.
        "/cli-token-login" => Some(format!("{base}/")),
        "/admin" | "/status" | "/reauthorize" => Some(format!("{base}{path}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_code_has_one_row_and_misconfiguration_is_for_the_operator() {
        for (i, r) in STEPS.iter().enumerate() {
            assert!(
                STEPS[i + 1..].iter().all(|o| o.code != r.code),
                "{} listed twice",
                r.code
            );
        }
        assert_eq!(for_code("provider_misconfigured").step, Step::TellOperator);
        assert_eq!(for_code("server_misconfigured").step, Step::TellOperator);
        assert_eq!(for_code("access_denied").step, Step::TryAgain);
        assert_eq!(for_code("unknown_provider").step, Step::StartPage);
        // A refused re-authorization is tried again as one, never as a new login.
        assert_eq!(for_code("different_account").step, Step::Reauthorize);
        assert_eq!(for_code("cannot_reauthorize").step, Step::StartPage);
        assert_eq!(for_code("no_such_code").what, "Something went wrong");
    }

    #[test]
    fn a_login_that_failed_at_the_provider_restarts_at_the_same_provider() {
        let callback = q(&[("code", "c"), ("state", "s")]);
        assert_eq!(
            restart_href("/callback/box.com", "box.com", "/k/K", &callback).as_deref(),
            Some("/k/K/login?id=box.com")
        );
        assert_eq!(
            restart_href("/callback/a&b", "a&b", "", &callback).as_deref(),
            Some("/login?id=a%26b")
        );
    }

    #[test]
    fn a_page_is_asked_for_again_without_the_gates_marker() {
        let login = q(&[
            ("id", "demo"),
            ("token", "t"),
            ("key_entered", "1"),
            ("key", "k"),
        ]);
        assert_eq!(
            restart_href("/login", "", "", &login).as_deref(),
            Some("/login?id=demo&token=t&key=k")
        );
        assert_eq!(
            restart_href("/akeeba/box", "box", "", &q(&[])).as_deref(),
            Some("/akeeba/box")
        );
        assert_eq!(
            restart_href("/revoked", "", "/k/K", &q(&[])).as_deref(),
            Some("/k/K/revoke")
        );
        assert_eq!(restart_href("/oauth/authorize", "", "", &login), None);
        assert_eq!(restart_href("/handoff", "", "", &q(&[])), None);
    }
}
