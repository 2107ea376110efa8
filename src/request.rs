//! Request validation shared by the routes: parameter lookup and where an
//! authid may come from.

use crate::authid::{parse_authid, AuthId, ParsedAuthId};
use crate::error::BrokerError;

/// A parameter given more than once is ambiguous, so it is refused.
pub const DUPLICATE: BrokerError = BrokerError::BadRequest {
    code: "duplicate_parameter",
    what: "a parameter was given more than once",
};

/// Decoded `application/x-www-form-urlencoded` pairs (query string or body).
pub type Params = Vec<(String, String)>;

/// Upper bound on a form body we read (authids are < 4.2 KB).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Parses a query string or form body.
pub fn parse_params(s: &str) -> Params {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

/// The single value of `name`. A parameter given twice is ambiguous and refused
/// ([`DUPLICATE`]), so a proxy and the broker can never disagree on it.
pub fn single<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, BrokerError> {
    let mut found = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = found.next();
    if found.next().is_some() {
        return Err(DUPLICATE);
    }
    Ok(first.map(String::as_str))
}

/// Where the authid of a `/refresh` comes from, in order: header `X-AuthID`
/// (what Duplicati sends), form field `authid` (POST), query `authid` (legacy).
/// Empty values count as absent. `Err` when a source repeats the parameter.
pub fn authid_from<'a>(
    header: Option<&'a str>,
    form: &'a Params,
    query: &'a Params,
) -> Result<Option<&'a str>, BrokerError> {
    if let Some(h) = header.filter(|h| !h.is_empty()) {
        return Ok(Some(h));
    }
    if let Some(f) = single(form, "authid")?.filter(|v| !v.is_empty()) {
        return Ok(Some(f));
    }
    Ok(single(query, "authid")?.filter(|v| !v.is_empty()))
}

/// A stored (v1) authid, for the routes that act on a stored grant (revoke,
/// export, import). Surrounding whitespace (a careless paste) is ignored; a
/// pass-through (v2) authid is refused: there is nothing stored to act on.
pub fn stored_authid(raw: &str) -> Result<AuthId, BrokerError> {
    match parse_authid(raw.trim())? {
        ParsedAuthId::V1(a) => Ok(a),
        ParsedAuthId::V2 { .. } => Err(BrokerError::BadRequest {
            code: "v2_not_stored",
            what: "pass-through (v2) authids are not stored by the broker",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stored_authids_are_accepted_where_a_stored_grant_is_needed() {
        let v1 = format!("{}:{}", "a".repeat(32), "k".repeat(43));
        assert!(stored_authid(&format!(" {v1}\n")).is_ok());
        assert_eq!(stored_authid("").unwrap_err(), BrokerError::MissingAuthId);
        assert_eq!(
            stored_authid("<x>").unwrap_err(),
            BrokerError::MalformedAuthId
        );
        let rt = crate::secret::RefreshToken::new("rt".into());
        let v2 = crate::authid::v2_authid("demo", &rt);
        assert_eq!(stored_authid(&v2).unwrap_err().code(), "v2_not_stored");
    }

    #[test]
    fn header_wins_then_form_then_query() {
        let form = parse_params("authid=F");
        let query = parse_params("authid=Q");
        let none = Params::new();
        assert_eq!(authid_from(Some("H"), &form, &query), Ok(Some("H")));
        assert_eq!(authid_from(None, &form, &query), Ok(Some("F")));
        assert_eq!(authid_from(Some(""), &none, &query), Ok(Some("Q")));
        assert_eq!(authid_from(None, &none, &none), Ok(None));
    }

    #[test]
    fn duplicate_parameters_are_refused() {
        let q = parse_params("authid=a&authid=b");
        assert_eq!(authid_from(None, &Params::new(), &q), Err(DUPLICATE));
        assert_eq!(single(&parse_params("id=x&id=x"), "id"), Err(DUPLICATE));
        assert_eq!(single(&parse_params("id=x"), "id"), Ok(Some("x")));
    }

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        assert_eq!(
            parse_params("a=1+2%3A3&b"),
            vec![("a".into(), "1 2:3".into()), ("b".into(), "".into())]
        );
    }
}
