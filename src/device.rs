//! The device authorization grant (RFC 8628) for headless machines, with any
//! provider: the codes, the verification page's input, and the answers to
//! polling.
//!
//! - The device code is 256 random bits (RFC 8628 §5.2 asks for enough
//!   entropy that it cannot be guessed during its life); only
//!   [`device_code_hash`] is stored.
//! - The user code is 8 letters from [`USER_CODE_ALPHABET`] (§6.1: 20
//!   consonants, no vowels so no words, no look-alike characters): 20^8 ≈
//!   2^34.6 values. The input is case- and dash-insensitive. Guessing is
//!   bounded (§5.1) by rate limits on the verification page, per IP on every
//!   code check and per network and for everyone on every miss
//!   (`shell/routes/device.rs`), and by the code's 10-minute life; only
//!   [`user_code_hash`] is stored.
//! - Polling answers `authorization_pending`, `slow_down` (and the interval
//!   grows by 5 s for good, §3.5), `access_denied`, `expired_token`, and once
//!   the authid.

use crate::digest::sha256_hex;
use crate::random;
use crate::redeem::Redeemed;

/// §3.2 `expires_in`.
pub const DEVICE_TTL_SECS: i64 = 600;
/// §3.2 `interval`.
pub const INTERVAL_SECS: i64 = 5;
/// §3.5: `slow_down` adds this to the interval, for this and all later polls.
pub const SLOW_DOWN_STEP_SECS: i64 = 5;
/// §6.1: consonants only (no vowels, so no words), none that look alike.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;

/// Storage key of a device code (`device_codes.device_code_hash`).
pub fn device_code_hash(device_code: &str) -> String {
    sha256_hex(&format!("oauth-broker/v1/device-code|{device_code}"))
}

/// Storage key of a normalized user code (`device_codes.user_code_hash`).
/// Unkeyed: a dumped row's user code could be found by trying all 2^34.6, but
/// it only lets someone approve that device with *their own* account within
/// its 10 minutes, and opens nothing.
pub fn user_code_hash(normalized: &str) -> String {
    sha256_hex(&format!("oauth-broker/v1/user-code|{normalized}"))
}

/// A fresh user code (8 letters, no dash). Rejection sampling keeps every
/// letter equally likely (240 = 12 × 20).
pub fn generate_user_code() -> Result<String, random::RandomError> {
    let mut out = String::with_capacity(USER_CODE_LEN);
    while out.len() < USER_CODE_LEN {
        let mut buf = [0u8; 16];
        random::fill(&mut buf)?;
        for b in buf {
            if b < 240 && out.len() < USER_CODE_LEN {
                out.push(USER_CODE_ALPHABET[(b % 20) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// `XXXX-XXXX`, as the user reads and types it.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

/// What the user typed, normalized (case, dashes and spaces ignored), if it
/// can be a user code at all.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// A device row's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Denied,
    /// The device collected its authid (the sealed answer is wiped).
    Collected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Collected => "collected",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending" => Some(Status::Pending),
            "approved" => Some(Status::Approved),
            "denied" => Some(Status::Denied),
            "collected" => Some(Status::Collected),
            _ => None,
        }
    }
}

/// A `device_codes` row as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub provider: String,
    pub status: Status,
    pub interval: i64,
    pub last_poll_at: Option<i64>,
    pub expires_at: i64,
    /// Where the codes were requested from: a two-letter country code
    /// ([`country`]), shown on the verification page.
    pub requested_from: Option<String>,
}

impl DeviceRecord {
    /// Unix seconds when the device asked for its codes.
    pub fn requested_at(&self) -> i64 {
        self.expires_at - DEVICE_TTL_SECS
    }
}

/// The request's country as Cloudflare names it (`request.cf.country`: ISO
/// 3166-1 alpha-2, or `XX` unknown, `T1` Tor), if it looks like one; anything
/// else is not shown.
pub fn country(cf_country: Option<&str>) -> Option<String> {
    let c = cf_country?.trim();
    (c.len() == 2
        && c.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    .then(|| c.to_string())
}

/// The confirmation cookie's value for the one-time `confirm` value of the
/// verification page's links, bound to the device row it was shown for: a
/// confirmation made for one code decides nothing for another.
pub fn confirmation_binding(confirm: &str, device_code_hash: &str) -> String {
    sha256_hex(&format!(
        "oauth-broker/v1/device-confirm|{device_code_hash}|{confirm}"
    ))
}

/// What one poll decides.
#[derive(Debug)]
pub enum Poll {
    /// Answer this; no change to the row.
    Answer(Redeemed),
    /// `authorization_pending` or `slow_down`: record the poll (and the new interval).
    Wait { answer: Redeemed, interval: i64 },
    /// Approved: take the row (single use) and answer with its authid.
    Take,
}

/// Decides a poll with `device_code` at `now` (RFC 8628 §3.4, §3.5).
/// `slow_down` is the variant of `authorization_pending` (§3.5), so it is
/// answered only while the user has not decided yet; a finished, refused or
/// expired code is answered as it is, however fast the device polls.
pub fn poll(record: Option<&DeviceRecord>, client_id: Option<&str>, now: i64) -> Poll {
    let Some(r) = record else {
        return Poll::Answer(Redeemed::Invalid("unknown or already used device code"));
    };
    // §3.4: a public client identifies itself; the code must be its own.
    match client_id {
        Some(id) if crate::providers::canonical_id(id) == r.provider => {}
        Some(_) => {
            return Poll::Answer(Redeemed::Invalid(
                "the device code was issued to another client_id",
            ))
        }
        None => {
            return Poll::Answer(Redeemed::Invalid(
                "client_id is required to redeem a device code",
            ))
        }
    }
    if now >= r.expires_at {
        return Poll::Answer(Redeemed::Expired);
    }
    match r.status {
        Status::Denied => Poll::Answer(Redeemed::Denied),
        Status::Approved => Poll::Take,
        Status::Collected => Poll::Answer(Redeemed::Invalid("unknown or already used device code")),
        Status::Pending => match r.last_poll_at {
            Some(last) if now - last < r.interval => Poll::Wait {
                answer: Redeemed::SlowDown,
                interval: r.interval + SLOW_DOWN_STEP_SECS,
            },
            _ => Poll::Wait {
                answer: Redeemed::Pending,
                interval: r.interval,
            },
        },
    }
}

/// The device authorization response (§3.2).
pub fn authorization_response(
    origin: &str,
    device_code: &str,
    user_code: &str,
) -> serde_json::Value {
    let verification_uri = format!("{}/device", origin.trim_end_matches('/'));
    let shown = display_user_code(user_code);
    let complete = format!("{verification_uri}?user_code={shown}");
    serde_json::json!({
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": verification_uri,
        "verification_uri_complete": complete,
        "expires_in": DEVICE_TTL_SECS,
        "interval": INTERVAL_SECS,
    })
}

#[cfg(test)]
mod provenance_tests {
    use super::*;

    #[test]
    fn a_confirmation_is_bound_to_the_code_it_was_shown_for() {
        let a = confirmation_binding("tok", "hash-a");
        assert_eq!(a, confirmation_binding("tok", "hash-a"));
        assert_ne!(a, confirmation_binding("tok", "hash-b"));
        assert_ne!(a, confirmation_binding("tok2", "hash-a"));
        assert_ne!(a, "tok");
    }

    #[test]
    fn only_a_country_code_is_shown() {
        assert_eq!(country(Some("DE")).as_deref(), Some("DE"));
        assert_eq!(country(Some("T1")).as_deref(), Some("T1"));
        for bad in [
            None,
            Some(""),
            Some("de"),
            Some("DEU"),
            Some("<b"),
            Some("D"),
        ] {
            assert_eq!(country(bad), None, "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_eight_letters_from_the_alphabet_shown_with_a_dash() {
        let a = generate_user_code().unwrap();
        let b = generate_user_code().unwrap();
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|c| USER_CODE_ALPHABET.contains(&c)));
        assert_ne!(a, b);
        let shown = display_user_code(&a);
        assert_eq!(shown.len(), 9);
        assert_eq!(&shown[4..5], "-");
    }

    #[test]
    fn user_code_input_is_case_and_dash_insensitive() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BcDfGhJk ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
        assert_eq!(
            normalize_user_code("BCDF-GHJA"),
            None,
            "vowels are not in codes"
        );
        assert_eq!(normalize_user_code("BCDF-GHJ1"), None);
        assert_eq!(normalize_user_code(""), None);
    }

    fn rec(status: Status, last: Option<i64>) -> DeviceRecord {
        DeviceRecord {
            provider: "demo".into(),
            status,
            interval: 5,
            last_poll_at: last,
            expires_at: 600,
            requested_from: None,
        }
    }

    #[test]
    fn polling_answers_pending_then_slow_down_when_too_fast() {
        let first = poll(Some(&rec(Status::Pending, None)), Some("demo"), 10);
        assert!(matches!(
            first,
            Poll::Wait {
                answer: Redeemed::Pending,
                interval: 5
            }
        ));
        let fast = poll(Some(&rec(Status::Pending, Some(8))), Some("demo"), 10);
        assert!(matches!(
            fast,
            Poll::Wait {
                answer: Redeemed::SlowDown,
                interval: 10
            }
        ));
        let paced = poll(Some(&rec(Status::Pending, Some(5))), Some("demo"), 10);
        assert!(matches!(
            paced,
            Poll::Wait {
                answer: Redeemed::Pending,
                interval: 5
            }
        ));
    }

    #[test]
    fn polling_answers_denied_expired_unknown_and_takes_an_approved_code() {
        let at = |status, last, now| poll(Some(&rec(status, last)), Some("demo"), now);
        assert!(matches!(
            at(Status::Denied, Some(9), 10),
            Poll::Answer(Redeemed::Denied)
        ));
        assert!(matches!(at(Status::Approved, Some(9), 10), Poll::Take));
        assert!(matches!(
            at(Status::Collected, Some(9), 10),
            Poll::Answer(Redeemed::Invalid(_))
        ));
        assert!(matches!(
            at(Status::Approved, None, 600),
            Poll::Answer(Redeemed::Expired)
        ));
        assert!(matches!(
            at(Status::Pending, None, 601),
            Poll::Answer(Redeemed::Expired)
        ));
        assert!(matches!(
            poll(None, Some("demo"), 1),
            Poll::Answer(Redeemed::Invalid(_))
        ));
        assert!(matches!(
            poll(Some(&rec(Status::Approved, None)), Some("box"), 1),
            Poll::Answer(Redeemed::Invalid(_))
        ));
        assert!(matches!(
            poll(Some(&rec(Status::Approved, None)), None, 1),
            Poll::Answer(Redeemed::Invalid(_))
        ));
    }

    #[test]
    fn the_authorization_response_has_every_rfc_8628_field() {
        let v = authorization_response("https://b.example/", "DC", "BCDFGHJK");
        assert_eq!(v["device_code"], "DC");
        assert_eq!(v["user_code"], "BCDF-GHJK");
        assert_eq!(v["verification_uri"], "https://b.example/device");
        assert_eq!(
            v["verification_uri_complete"],
            "https://b.example/device?user_code=BCDF-GHJK"
        );
        assert_eq!(v["expires_in"], 600);
        assert_eq!(v["interval"], 5);
    }

    #[test]
    fn hashes_are_domain_separated() {
        assert_ne!(device_code_hash("X"), user_code_hash("X"));
    }
}
