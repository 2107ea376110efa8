//! The provider account behind a grant, for re-authorization in place.
//!
//! The holder of an authid whose grant died (a password change, the app
//! removed, an idle limit) may log in again and keep the *same* authid, so
//! every backup job keeps its configuration. The new login must be the same
//! provider account as the original, or a leaked authid could re-point
//! someone's future backups into an attacker's storage. So every mint records
//! a keyed hash of the provider's stable account id (`crate::seal`,
//! [`crate::seal::ServerKeys::account_hash`]) inside the sealed grant, and a
//! re-authorization compares it. Where the id comes from is provider data
//! ([`crate::providers::AccountSource`]); this file reads it out of what the
//! provider answered. Nothing here is logged or shown.

use base64::Engine as _;
use serde_json::Value;

use crate::providers::AccountSource;
use crate::upstream::TokenResponse;

/// Longest account id accepted (provider ids are short: Dropbox's
/// `dbid:` + 40, Box's digits, Graph's GUID or hex CID).
const MAX_ID_LEN: usize = 256;

/// What a provider's answer says about the account, for one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The stable account id.
    Id(String),
    /// The provider gives none ([`AccountSource::None`]).
    NotOffered,
    /// Ask the endpoint with the new access token ([`AccountSource::Endpoint`]).
    AskEndpoint { url: String, field: String },
    /// The answer should have carried it and did not.
    Missing,
}

/// The account id in a code exchange's token answer, or where to ask for it.
pub fn from_token_answer(source: &AccountSource, resp: &TokenResponse) -> Found {
    match source {
        AccountSource::None => Found::NotOffered,
        AccountSource::TokenAnswer { field } => id_at(resp.field(field), "").into(),
        AccountSource::IdToken => resp
            .field("id_token")
            .and_then(Value::as_str)
            .and_then(id_token_subject)
            .map(Found::Id)
            .unwrap_or(Found::Missing),
        AccountSource::Endpoint { url, field } => Found::AskEndpoint {
            url: url.clone(),
            field: field.clone(),
        },
    }
}

/// The account id at the dotted `field` path of an account endpoint's JSON
/// answer (`owner.user.id`).
pub fn from_endpoint_answer(body: &[u8], field: &str) -> Found {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Found::Missing;
    };
    let (first, rest) = field.split_once('.').unwrap_or((field, ""));
    id_at(v.get(first), rest).into()
}

impl From<Option<String>> for Found {
    fn from(id: Option<String>) -> Found {
        id.map(Found::Id).unwrap_or(Found::Missing)
    }
}

/// A non-empty string or integer at `path` below `v`, within [`MAX_ID_LEN`].
fn id_at(v: Option<&Value>, path: &str) -> Option<String> {
    let v = path
        .split('.')
        .filter(|p| !p.is_empty())
        .try_fold(v?, |v, key| v.get(key))?;
    let id = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ID_LEN).then_some(id)
}

/// The `sub` claim of a JWT's payload (unverified: see
/// [`AccountSource::IdToken`] for why TLS stands in for the signature).
fn id_token_subject(jwt: &str) -> Option<String> {
    let mut parts = jwt.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    id_at(claims.get("sub"), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> TokenResponse {
        TokenResponse::parse(json.as_bytes()).unwrap()
    }

    fn jwt(claims: &str) -> String {
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b(r#"{"alg":"RS256"}"#), b(claims))
    }

    #[test]
    fn dropbox_names_the_account_in_its_token_answer() {
        let src = AccountSource::TokenAnswer {
            field: "account_id".into(),
        };
        let r = answer(r#"{"access_token":"a","refresh_token":"r","account_id":"dbid:AAB"}"#);
        assert_eq!(from_token_answer(&src, &r), Found::Id("dbid:AAB".into()));
        let r = answer(r#"{"access_token":"a","refresh_token":"r"}"#);
        assert_eq!(from_token_answer(&src, &r), Found::Missing);
        let r = answer(r#"{"access_token":"a","account_id":""}"#);
        assert_eq!(from_token_answer(&src, &r), Found::Missing);
    }

    #[test]
    fn an_id_tokens_subject_names_the_account_and_a_malformed_one_names_none() {
        let t = jwt(r#"{"sub":"f3a1-77","iss":"https://id.jottacloud.com"}"#);
        let r = answer(&format!(r#"{{"access_token":"a","id_token":"{t}"}}"#));
        assert_eq!(
            from_token_answer(&AccountSource::IdToken, &r),
            Found::Id("f3a1-77".into())
        );
        for bad in [
            "x.y",
            "a.!!!.c",
            &jwt(r#"{"iss":"x"}"#),
            &jwt(r#"{"sub":7.5}"#),
        ] {
            let r = answer(&format!(r#"{{"access_token":"a","id_token":"{bad}"}}"#));
            assert_eq!(
                from_token_answer(&AccountSource::IdToken, &r),
                Found::Missing,
                "{bad}"
            );
        }
    }

    #[test]
    fn an_endpoint_answer_is_read_at_its_dotted_path_strings_and_integers_alike() {
        let graph = br#"{"owner":{"user":{"id":"8a1b","displayName":"A"}}}"#;
        assert_eq!(
            from_endpoint_answer(graph, "owner.user.id"),
            Found::Id("8a1b".into())
        );
        assert_eq!(
            from_endpoint_answer(br#"{"id":12345}"#, "id"),
            Found::Id("12345".into())
        );
        assert_eq!(
            from_endpoint_answer(graph, "owner.group.id"),
            Found::Missing
        );
        assert_eq!(from_endpoint_answer(b"not json", "id"), Found::Missing);
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_LEN + 1));
        assert_eq!(from_endpoint_answer(long.as_bytes(), "id"), Found::Missing);
    }

    #[test]
    fn an_endpoint_source_asks_with_the_new_token_and_none_offers_nothing() {
        let r = answer(r#"{"access_token":"a","account_id":"x"}"#);
        assert_eq!(
            from_token_answer(&AccountSource::None, &r),
            Found::NotOffered
        );
        let src = AccountSource::Endpoint {
            url: "https://api.box.com/2.0/users/me?fields=id".into(),
            field: "id".into(),
        };
        assert!(matches!(
            from_token_answer(&src, &r),
            Found::AskEndpoint { .. }
        ));
    }
}
