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

/// Upper bound on a body we read (a form with an authid of at most 8 KiB, or
/// an import's token JSON).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The answer to a body over [`MAX_FORM_BYTES`].
pub const BODY_TOO_LARGE: BrokerError = BrokerError::BadRequest {
    code: "body_too_large",
    what: "the request body is too large",
};

/// The answer to a body that cannot be read.
pub const BAD_BODY: BrokerError = BrokerError::BadRequest {
    code: "bad_body",
    what: "the request body could not be read",
};

/// Decides from the declared `Content-Length`, before any of the body is read,
/// whether it may be read at all: a declared size over the cap is refused at
/// once, so a client cannot make the worker wait for (or buffer) a large body.
/// Without the header (a chunked body) the body is read through [`CappedBody`].
pub fn admit_declared_length(content_length: Option<&str>) -> Result<(), BrokerError> {
    let Some(v) = content_length.map(str::trim) else {
        return Ok(());
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_BODY);
    }
    match v.parse::<u64>() {
        Ok(n) if n <= MAX_FORM_BYTES as u64 => Ok(()),
        _ => Err(BODY_TOO_LARGE), // larger, or too many digits for a u64
    }
}

/// A body collected chunk by chunk that refuses the chunk taking it over
/// [`MAX_FORM_BYTES`], so no more than the cap is ever held or waited for.
#[derive(Debug, Default)]
pub struct CappedBody {
    bytes: Vec<u8>,
}

impl CappedBody {
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BrokerError> {
        if self.bytes.len().saturating_add(chunk.len()) > MAX_FORM_BYTES {
            return Err(BODY_TOO_LARGE);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

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
    fn a_declared_length_over_the_cap_is_refused_before_reading() {
        assert_eq!(
            admit_declared_length(None),
            Ok(()),
            "chunked: read with the cap"
        );
        assert_eq!(admit_declared_length(Some("0")), Ok(()));
        assert_eq!(admit_declared_length(Some("16384")), Ok(()));
        for big in ["16385", "100000000", "99999999999999999999999999"] {
            assert_eq!(
                admit_declared_length(Some(big)),
                Err(BODY_TOO_LARGE),
                "{big}"
            );
        }
        for junk in ["", "-1", "1e9", "12 34", "0x10", "+5"] {
            assert_eq!(admit_declared_length(Some(junk)), Err(BAD_BODY), "{junk:?}");
        }
    }

    #[test]
    fn a_body_without_a_length_is_cut_off_at_the_cap() {
        let mut body = CappedBody::default();
        for _ in 0..4 {
            assert_eq!(body.push(&[b'a'; 4096]), Ok(()));
        }
        assert_eq!(body.push(b""), Ok(()));
        assert_eq!(body.push(b"a"), Err(BODY_TOO_LARGE), "one byte over");
        assert_eq!(
            body.into_bytes().len(),
            MAX_FORM_BYTES,
            "nothing past the cap kept"
        );
        let mut one = CappedBody::default();
        assert_eq!(one.push(&vec![0; MAX_FORM_BYTES + 1]), Err(BODY_TOO_LARGE));
    }

    #[test]
    fn form_decoding_handles_plus_and_percent() {
        assert_eq!(
            parse_params("a=1+2%3A3&b"),
            vec![("a".into(), "1 2:3".into()), ("b".into(), "".into())]
        );
    }
}
