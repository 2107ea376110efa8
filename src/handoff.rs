//! The old Duplicati UI's hand-off: it opens `/?type=<id>&token=<t>` and polls
//! `/fetch?token=<t>` (JSON or JSONP) until the login that carried `t` has made
//! an authid. This module holds the hand-off's rules: the token's shape and
//! strength, its storage key, the cookies that bind it to a browser, the
//! decisions of each step (register, start the login, confirm, collect),
//! `/fetch`'s answers and the JSONP wrapper. The pending authid itself is
//! sealed by [`crate::seal::ServerKeys::seal_handoff`] (all AEAD lives in
//! `seal.rs`), is handed out once, and expires after [`FETCH_TTL_SECS`].
//!
//! Why so many steps (login CSRF, RFC 9700 §4.7): the token is chosen by
//! whoever writes the link, and `/fetch` can only be keyed by it (Duplicati
//! polls it cross-site by JSONP, where no cookie of ours is sent). A link
//! carrying a token an attacker chose would hand the attacker the authid of
//! whoever logs in through it. So:
//! 1. `GET /?token=t` registers `t` and binds it to the browser with the
//!    [`BINDING_COOKIE`] (first registration wins; another browser gets 409);
//! 2. `/login?token=t` is refused unless `t` is registered *by this browser*,
//!    and asks the provider for consent (no silent login);
//! 3. the callback leaves the authid sealed but **unconfirmed**, and the result
//!    page asks the user to send it to the Duplicati window (a POST carrying a
//!    single-use [`ConfirmToken`] and the binding cookie);
//! 4. only a confirmed hand-off is ever answered by `/fetch`.

use serde_json::{json, Value};

use crate::digest::domain_hex;
use crate::error::BrokerError;
use crate::random;
use crate::request::{single, Params};
use crate::secret::{ct_eq, secret_type};

/// How long a registered fetch token (and the browser's binding cookie) lives.
pub const FETCH_TTL_SECS: i64 = 900;

/// How long the result page's "send to Duplicati" button stays valid. Duplicati's
/// old UI gives up polling after about five minutes (100 polls, 3 s apart:
/// `EditUriBuiltins.js`, cited at [`MIN_TOKEN_BITS`]), so a later click is useless.
pub const CONFIRM_TTL_SECS: i64 = 300;

/// Name of the cookie that carries the fetch token from `/login` to the callback.
pub const COOKIE_NAME: &str = "__Host-broker-fetch";

/// Name of the cookie that binds registered fetch tokens to the browser that
/// registered them. `__Host-`: Secure, Path=/, no Domain, so no sibling host can
/// plant one; its value is 256 random bits, stored only hashed.
pub const BINDING_COOKIE: &str = "__Host-broker-handoff";

/// The least a fetch token must be able to carry. Duplicati's old UI makes its
/// token as `Math.random().toString(36).substr(2) + Math.random().toString(36).substr(2)`
/// (duplicati/duplicati, `Duplicati/Server/webroot/ngax/scripts/services/EditUriBuiltins.js`
/// line 193 at commit 66cfb242da3bfb74e9e18130684e4319eb442eb1): two base-36
/// fractions of about 10–11 digits each, ~20–22 chars of `[0-9a-z]` (≈ 103–114
/// bits of capacity). 64 bits keeps a token out of reach of anyone polling
/// `/fetch` with guesses (≥ 2^63 tries per token, against a per-IP limit and a
/// 15-minute life) while every real Duplicati token passes with room to spare.
pub const MIN_TOKEN_BITS: f64 = 64.0;

/// A token must also use this many different characters: a random token of the
/// minimum length does with near certainty (a 16-char hex token falls short with
/// probability ≈ 4·10⁻⁵, Duplicati's 20 base-36 chars ≈ 3·10⁻¹²), while
/// `aaaa…` or `abab…`, long but guessable, do not.
pub const MIN_DISTINCT_CHARS: usize = 6;

/// A fetch token as the UI sends it: 1–128 chars of `[A-Za-z0-9._~-]`.
pub fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
}

/// The size of the smallest usual alphabet that holds every char of `t`
/// (a valid token): digits 10, hex 16 (either case), one-case base-36 36,
/// base-62 62, the whole token alphabet 66. A token's capacity is judged by the
/// alphabet it visibly uses, so a long string of digits is not mistaken for a
/// strong one; where in doubt the smaller alphabet is assumed.
fn alphabet_size(t: &str) -> u32 {
    let all = |f: fn(&u8) -> bool| t.as_bytes().iter().all(f);
    if all(u8::is_ascii_digit) {
        10
    } else if all(u8::is_ascii_hexdigit) {
        16
    } else if all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        || all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        36
    } else if all(u8::is_ascii_alphanumeric) {
        62
    } else {
        66
    }
}

/// Whether a valid token can carry [`MIN_TOKEN_BITS`]: length × log2(alphabet)
/// and [`MIN_DISTINCT_CHARS`] different characters. The broker cannot measure a
/// string's randomness; it refuses what cannot be random enough.
pub fn strong_token(t: &str) -> bool {
    let bits = t.len() as f64 * f64::from(alphabet_size(t)).log2();
    let mut seen = [false; 256];
    let distinct = t
        .bytes()
        .filter(|&b| !std::mem::replace(&mut seen[usize::from(b)], true))
        .count();
    valid_token(t) && bits >= MIN_TOKEN_BITS && distinct >= MIN_DISTINCT_CHARS
}

/// The `token` query parameter, validated (`None` when absent or empty). A
/// malformed or weak token is a 400 `bad_token`, never silently dropped: the UI
/// that sent it would otherwise poll forever.
pub fn token_param(query: &Params) -> Result<Option<&str>, BrokerError> {
    match single(query, "token")?.filter(|t| !t.is_empty()) {
        Some(t) if !valid_token(t) => Err(BrokerError::BadRequest {
            code: "bad_token",
            what: "token must be 1-128 chars of A-Z a-z 0-9 . _ ~ -",
        }),
        Some(t) if !strong_token(t) => Err(BrokerError::BadRequest {
            code: "bad_token",
            what: "token is too short or too regular to be unguessable (it must carry 64 random bits, e.g. 13 random base-36 chars)",
        }),
        Some(t) => Ok(Some(t)),
        None => Ok(None),
    }
}

/// Storage key of a fetch token (`fetch_tokens.token_hash`), also bound into
/// the hand-off's AAD by [`crate::seal::ServerKeys::seal_handoff`]. Unkeyed
/// (unlike a grant's `key_hash`) so the row key stays the same across a
/// server-secret rotation; it opens nothing, as the hand-off key also needs `S_v`.
pub fn token_hash(token: &str) -> String {
    domain_hex("oauth-broker/v1/fetch-token|", token)
}

secret_type!(
    /// The value of the [`BINDING_COOKIE`]: which browser registered a token.
    HandoffBinding,
    Clone
);

secret_type!(
    /// The single-use token of the result page's "send to Duplicati" form (the
    /// form's CSRF token). Used once, so not `Clone`.
    ConfirmToken
);

/// 256 random bits as 43 base64url chars: the shape of our own random values.
fn our_random_shape(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl HandoffBinding {
    /// A fresh binding (256 random bits).
    pub fn generate() -> Result<HandoffBinding, BrokerError> {
        Ok(HandoffBinding::new(random::token_b64url(32)?))
    }

    /// The [`BINDING_COOKIE`]'s value, if it has the shape we issue (anything
    /// else cannot be ours, and a fresh binding is issued instead).
    pub fn from_cookie_value(v: &str) -> Option<HandoffBinding> {
        our_random_shape(v).then(|| HandoffBinding::new(v.to_string()))
    }

    /// Its storage form (`fetch_tokens.binding_hash`).
    pub fn hash(&self) -> String {
        domain_hex("oauth-broker/v1/handoff-binding|", self.secret())
    }
}

impl ConfirmToken {
    /// A fresh confirmation token (256 random bits).
    pub fn generate() -> Result<ConfirmToken, BrokerError> {
        Ok(ConfirmToken::new(random::token_b64url(32)?))
    }

    /// Its storage form (`fetch_tokens.confirm_hash`).
    pub fn hash(&self) -> String {
        domain_hex("oauth-broker/v1/handoff-confirm|", self.secret())
    }
}

/// The `confirm` field of the confirming POST. A value of another shape cannot
/// be one we issued, so it is refused before any lookup.
pub fn confirm_param(form: &Params) -> Result<ConfirmToken, BrokerError> {
    single(form, "confirm")?
        .filter(|v| our_random_shape(v))
        .map(|v| ConfirmToken::new(v.to_string()))
        .ok_or(ConfirmError::Unknown.into())
}

/// What the broker knows about a registered token: a `fetch_tokens` row
/// without its sealed authid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Hash of the registering browser's [`BINDING_COOKIE`]; `None` for rows
    /// registered before migration 0003, which no browser can use any more.
    pub binding_hash: Option<String>,
    /// The login finished and left the sealed authid.
    pub sealed: bool,
    /// The user confirmed sending it to Duplicati.
    pub confirmed: bool,
    /// `/fetch` handed it out.
    pub collected: bool,
    /// Until when the result page's confirmation is accepted (unix seconds).
    pub confirm_expires_at: Option<i64>,
}

impl Registration {
    /// Whether `binding` is the browser that registered the token.
    pub fn bound_to(&self, binding: Option<&HandoffBinding>) -> bool {
        match (&self.binding_hash, binding) {
            (Some(stored), Some(b)) => ct_eq(stored.as_bytes(), b.hash().as_bytes()),
            _ => false,
        }
    }
}

/// `GET /?token=t` found `t` registered: fine for the browser that registered
/// it (a reload, a second click in Duplicati), a 409 for any other, so a token
/// someone else registered can never be logged in with here.
pub fn check_registration(
    found: Option<&Registration>,
    binding: &HandoffBinding,
) -> Result<(), BrokerError> {
    match found {
        Some(r) if r.bound_to(Some(binding)) => Ok(()),
        _ => Err(BrokerError::Conflict {
            code: "token_in_use",
            what: "this hand-off was started in another browser; start again from Duplicati",
        }),
    }
}

/// `/login?token=t`: only a token this browser registered, whose authid has
/// not been confirmed or collected yet, may ride along (a login link carrying
/// someone else's token is how the authid would be stolen). A sealed but
/// unconfirmed hand-off may be replaced: the user logs in again (say, with
/// another account) before sending it.
pub fn check_login(
    found: Option<&Registration>,
    binding: Option<&HandoffBinding>,
) -> Result<(), BrokerError> {
    match found {
        Some(r) if r.bound_to(binding) && !r.confirmed && !r.collected => Ok(()),
        _ => Err(BrokerError::BadRequest {
            code: "unregistered_token",
            what: "this hand-off was not started in this browser or is finished; start again from Duplicati",
        }),
    }
}

/// Why a confirmation is refused (every one is the same 400 page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmError {
    /// No row for the token: never issued, replaced by a newer login, used, or gone.
    Unknown,
    Expired,
    /// No binding cookie, or another browser's.
    WrongBrowser,
    /// Already confirmed or collected (a second click).
    Used,
}

impl From<ConfirmError> for BrokerError {
    fn from(_: ConfirmError) -> Self {
        BrokerError::BadRequest {
            code: "invalid_confirmation",
            what: "this confirmation is invalid, used or expired; start again from Duplicati",
        }
    }
}

/// The confirming POST: the row its token names must be sealed, waiting for
/// this confirmation, within [`CONFIRM_TTL_SECS`], and registered by the
/// browser that posts. Returns the binding to require again in the atomic update.
pub fn check_confirmation<'b>(
    found: Option<&Registration>,
    binding: Option<&'b HandoffBinding>,
    now: i64,
) -> Result<&'b HandoffBinding, ConfirmError> {
    let r = found.ok_or(ConfirmError::Unknown)?;
    if !r.sealed {
        return Err(ConfirmError::Unknown);
    }
    if r.confirmed || r.collected {
        return Err(ConfirmError::Used);
    }
    if r.confirm_expires_at.is_none_or(|t| now >= t) {
        return Err(ConfirmError::Expired);
    }
    match binding {
        Some(b) if r.bound_to(Some(b)) => Ok(b),
        _ => Err(ConfirmError::WrongBrowser),
    }
}

/// What `/fetch` may do with a row: hand out only a confirmed authid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStage {
    /// Registered, or sealed but not confirmed yet: "Not ready".
    Waiting,
    /// Confirmed: open the sealed authid and collect it.
    Ready,
    /// Handed out already, or unreadable: "No such entry".
    Gone,
}

impl Registration {
    pub fn fetch_stage(&self) -> FetchStage {
        match (self.collected, self.sealed, self.confirmed) {
            (true, _, _) => FetchStage::Gone,
            (false, true, true) => FetchStage::Ready,
            _ => FetchStage::Waiting,
        }
    }
}

/// What `/fetch` answers (always HTTP 200, as the old UI expects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAnswer {
    Authid(String),
    NotReady,
    NoSuchEntry,
    MissingToken,
}

impl FetchAnswer {
    pub fn json(&self) -> Value {
        match self {
            FetchAnswer::Authid(a) => json!({ "authid": a }),
            FetchAnswer::NotReady => json!({ "wait": "Not ready" }),
            FetchAnswer::NoSuchEntry => json!({ "error": "No such entry" }),
            FetchAnswer::MissingToken => json!({ "error": "Missing token" }),
        }
    }
}

/// A JSONP callback name: dot-separated JS identifiers (`JSON_CALLBACK`,
/// `angular.callbacks._0`), at most 128 chars. Nothing else can reach script text.
pub fn valid_callback(cb: &str) -> bool {
    cb.len() <= 128
        && !cb.is_empty()
        && cb.split('.').all(|part| {
            let mut bytes = part.bytes();
            bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        })
}

/// The JSONP body. The leading comment keeps the first bytes fixed (no
/// content-sniffing games with a callback name); the callback is validated.
pub fn jsonp(callback: &str, body: &Value) -> Option<String> {
    valid_callback(callback).then(|| format!("/**/ {callback}({body});"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens made the way Duplicati's old UI makes them (Node's V8 running
    /// `Math.random().toString(36).substr(2) + Math.random().toString(36).substr(2)`).
    /// Over a million such tokens were 17–26 chars long, used ≥ 9 distinct chars,
    /// and every one passed [`strong_token`].
    const DUPLICATI_TOKENS: &[&str] = &[
        "qcry6zw2wikbmzyaxunbz",
        "9ceikrtb9lqynln8rjise",
        "0r11xs1yza1dvijeffahg7",
        "4b2kf1wvh4cr18k9f490dg",
        "pzy1ipnfp4cflf3tmvg3h5",
    ];

    #[test]
    fn the_token_parameter_is_optional_but_never_malformed_or_weak() {
        use crate::request::parse_params;
        let strong = DUPLICATI_TOKENS[0];
        assert_eq!(
            token_param(&parse_params(&format!("token={strong}"))),
            Ok(Some(strong))
        );
        assert_eq!(token_param(&parse_params("token=")), Ok(None));
        assert_eq!(token_param(&parse_params("x=1")), Ok(None));
        for bad in ["token=%3Cx", "token=a.b", "token=abcdefghijkl"] {
            assert_eq!(
                token_param(&parse_params(bad)).unwrap_err().code(),
                "bad_token",
                "{bad}"
            );
        }
        assert_eq!(
            token_param(&parse_params("token=a&token=b"))
                .unwrap_err()
                .code(),
            "duplicate_parameter"
        );
    }

    #[test]
    fn tokens_are_validated() {
        assert!(valid_token("abc-123_x.y~z"));
        assert!(!valid_token(""));
        assert!(!valid_token("a b"));
        assert!(!valid_token("a<b"));
        assert!(!valid_token(&"a".repeat(129)));
    }

    #[test]
    fn duplicatis_real_tokens_carry_at_least_64_bits() {
        for t in DUPLICATI_TOKENS {
            assert!(strong_token(t), "{t}");
        }
    }

    #[test]
    fn a_token_needs_64_bits_in_the_alphabet_it_uses() {
        // base-36: 13 chars = 67.2 bits, 12 = 62.0.
        assert!(strong_token("0g1h2i3j4k5l6"));
        assert!(!strong_token("0g1h2i3j4k5l"));
        assert!(!strong_token("0a1b2c3d4e5f6"), "13 hex chars are 52 bits");
        // hex: 16 chars = 64 bits exactly.
        assert!(strong_token("0123456789abcdef"));
        assert!(!strong_token("0123456789abcde"));
        assert!(strong_token("0123456789ABCDEF"));
        // digits: 20 = 66.4 bits, 19 = 63.1.
        assert!(strong_token("01234567890123456789"));
        assert!(!strong_token("0123456789012345678"));
        // base-62 and the full alphabet: 11 chars ≈ 65.5 / 66.5 bits, 10 too few.
        assert!(strong_token("aB3dE6gH9jK"));
        assert!(!strong_token("aB3dE6gH9j"));
        assert!(strong_token("a-b_c.d~e1F"));
        assert!(!strong_token("a-b_c.d~e1"));
        // Hex in mixed case is still counted as hex (the smaller alphabet).
        assert!(strong_token("0123456789aBcDeF"));
        assert!(!strong_token("0123456789aBcDe"));
    }

    #[test]
    fn long_but_regular_tokens_are_refused() {
        assert!(!strong_token(&"a".repeat(40)));
        assert!(!strong_token(&"ab".repeat(20)));
        assert!(!strong_token(&"abcde".repeat(8)));
        assert!(strong_token(&"abcdef".repeat(8)));
        assert!(
            !strong_token("t<ab1cd2ef3gh4ij5kl6"),
            "invalid is never strong"
        );
    }

    #[test]
    fn a_binding_cookie_is_taken_only_in_the_shape_we_issue() {
        let b = HandoffBinding::generate().unwrap();
        assert_eq!(b.secret().len(), 43);
        let got = HandoffBinding::from_cookie_value(b.secret()).unwrap();
        assert_eq!(got, b);
        assert_eq!(got.hash(), b.hash());
        assert_ne!(b.hash(), HandoffBinding::generate().unwrap().hash());
        assert!(!b.hash().contains(b.secret()));
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &"a".repeat(42)),
        ] {
            assert!(HandoffBinding::from_cookie_value(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_domain_separated() {
        let v = "A".repeat(43);
        assert_ne!(
            HandoffBinding::new(v.clone()).hash(),
            ConfirmToken::new(v.clone()).hash()
        );
        assert_ne!(ConfirmToken::new(v.clone()).hash(), token_hash(&v));
        assert_ne!(
            ConfirmToken::new(v.clone()).hash(),
            crate::digest::sha256_hex(&v)
        );
    }

    fn registered_by(b: &HandoffBinding) -> Registration {
        Registration {
            binding_hash: Some(b.hash()),
            sealed: false,
            confirmed: false,
            collected: false,
            confirm_expires_at: None,
        }
    }

    fn sealed_by(b: &HandoffBinding, until: i64) -> Registration {
        Registration {
            sealed: true,
            confirm_expires_at: Some(until),
            ..registered_by(b)
        }
    }

    #[test]
    fn a_token_registered_by_one_browser_is_refused_to_another() {
        let mine = HandoffBinding::generate().unwrap();
        let theirs = HandoffBinding::generate().unwrap();
        assert_eq!(
            check_registration(Some(&registered_by(&mine)), &mine),
            Ok(())
        );
        let err = check_registration(Some(&registered_by(&theirs)), &mine).unwrap_err();
        assert_eq!((err.status(), err.code()), (409, "token_in_use"));
        assert!(check_registration(None, &mine).is_err());
        let legacy = Registration {
            binding_hash: None,
            ..registered_by(&mine)
        };
        assert!(check_registration(Some(&legacy), &mine).is_err());
    }

    #[test]
    fn a_login_carries_only_a_token_this_browser_registered_and_has_not_sent() {
        let mine = HandoffBinding::generate().unwrap();
        let theirs = HandoffBinding::generate().unwrap();
        let ok = |r: Option<&Registration>, b: Option<&HandoffBinding>| check_login(r, b);
        assert_eq!(ok(Some(&registered_by(&mine)), Some(&mine)), Ok(()));
        assert_eq!(
            ok(Some(&sealed_by(&mine, 10)), Some(&mine)),
            Ok(()),
            "log in again"
        );
        let refused = [
            ok(None, Some(&mine)),
            ok(Some(&registered_by(&mine)), None),
            ok(Some(&registered_by(&theirs)), Some(&mine)),
            ok(
                Some(&Registration {
                    confirmed: true,
                    ..sealed_by(&mine, 10)
                }),
                Some(&mine),
            ),
            ok(
                Some(&Registration {
                    collected: true,
                    ..registered_by(&mine)
                }),
                Some(&mine),
            ),
        ];
        for r in refused {
            assert_eq!(r.unwrap_err().code(), "unregistered_token");
        }
    }

    #[test]
    fn a_confirmation_needs_a_sealed_fresh_unused_row_and_the_registering_browser() {
        let mine = HandoffBinding::generate().unwrap();
        let theirs = HandoffBinding::generate().unwrap();
        let row = sealed_by(&mine, 100);
        assert_eq!(check_confirmation(Some(&row), Some(&mine), 99), Ok(&mine));
        assert_eq!(
            check_confirmation(None, Some(&mine), 1),
            Err(ConfirmError::Unknown)
        );
        assert_eq!(
            check_confirmation(Some(&registered_by(&mine)), Some(&mine), 1),
            Err(ConfirmError::Unknown),
            "nothing sealed yet"
        );
        assert_eq!(
            check_confirmation(Some(&row), Some(&mine), 100),
            Err(ConfirmError::Expired)
        );
        assert_eq!(
            check_confirmation(Some(&row), Some(&theirs), 1),
            Err(ConfirmError::WrongBrowser)
        );
        assert_eq!(
            check_confirmation(Some(&row), None, 1),
            Err(ConfirmError::WrongBrowser)
        );
        for used in [
            Registration {
                confirmed: true,
                ..row.clone()
            },
            Registration {
                collected: true,
                ..row.clone()
            },
        ] {
            assert_eq!(
                check_confirmation(Some(&used), Some(&mine), 1),
                Err(ConfirmError::Used)
            );
        }
        let e: BrokerError = ConfirmError::WrongBrowser.into();
        assert_eq!((e.status(), e.code()), (400, "invalid_confirmation"));
    }

    #[test]
    fn the_confirm_field_must_have_the_shape_we_issue() {
        use crate::request::parse_params;
        let c = ConfirmToken::generate().unwrap();
        let form = parse_params(&format!("confirm={}", c.secret()));
        assert_eq!(confirm_param(&form).unwrap(), c);
        for bad in ["", "confirm=", "confirm=short", "confirm=a&confirm=b"] {
            assert!(confirm_param(&parse_params(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn fetch_hands_out_only_a_confirmed_authid() {
        let b = HandoffBinding::generate().unwrap();
        assert_eq!(registered_by(&b).fetch_stage(), FetchStage::Waiting);
        assert_eq!(sealed_by(&b, 1).fetch_stage(), FetchStage::Waiting);
        let confirmed = Registration {
            confirmed: true,
            ..sealed_by(&b, 1)
        };
        assert_eq!(confirmed.fetch_stage(), FetchStage::Ready);
        let collected = Registration {
            collected: true,
            ..confirmed
        };
        assert_eq!(collected.fetch_stage(), FetchStage::Gone);
    }

    #[test]
    fn answers_match_duplicatis_expectations() {
        assert_eq!(
            FetchAnswer::NotReady.json().to_string(),
            r#"{"wait":"Not ready"}"#
        );
        assert_eq!(
            FetchAnswer::NoSuchEntry.json().to_string(),
            r#"{"error":"No such entry"}"#
        );
        assert_eq!(
            FetchAnswer::MissingToken.json().to_string(),
            r#"{"error":"Missing token"}"#
        );
        assert_eq!(
            FetchAnswer::Authid("a:b".into()).json().to_string(),
            r#"{"authid":"a:b"}"#
        );
    }

    #[test]
    fn jsonp_accepts_identifiers_only() {
        let body = json!({"wait": "Not ready"});
        assert_eq!(
            jsonp("angular.callbacks._0", &body).unwrap(),
            r#"/**/ angular.callbacks._0({"wait":"Not ready"});"#
        );
        assert!(jsonp("JSON_CALLBACK", &body).is_some());
        for bad in [
            "",
            "alert(1)//",
            "a;b",
            "a..b",
            "1abc",
            "a-b",
            "<script>",
            "a b",
            "x\u{2028}",
        ] {
            assert!(jsonp(bad, &body).is_none(), "{bad:?}");
        }
        assert!(jsonp(&"a".repeat(129), &body).is_none());
    }

    #[test]
    fn token_hash_is_domain_separated() {
        assert_eq!(token_hash("t").len(), 64);
        assert_ne!(token_hash("t"), crate::digest::sha256_hex("t"));
    }
}
