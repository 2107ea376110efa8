//! A stored (v1) authid, `<keyid>:<secret>`, in the three spellings it may
//! have: ours and those of Duplicati's two services, whose grants move here
//! keeping the authids their users pasted (`docs/reference.md`, "Authids").

use super::error::AuthIdError;
use super::shard_tag;
use crate::ids::Shard;
use crate::random;
use crate::secret::AuthSecret;

/// Which service's spelling a stored (v1) authid has. The keyid locates the
/// row and the secret keys the seal whatever the spelling; the format decides
/// only what parses, what an imported secret must look like, and whether a
/// grant may be fetched from an operator's oauth-handler (`crate::handler_move`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthIdFormat {
    /// Ours: `<32 hex>:<43 base64url>` (256-bit secret).
    Broker,
    /// duplicati/oauth-handler main.py `create_authtoken` (L55-87):
    /// keyid `'%030x' % random.randrange(16 ** 32)` (30 to 32 lowercase hex:
    /// zero-padded to 30, longer when the number is), secret
    /// `password_generator.generate_pass()` (21 characters, four classes
    /// `a-z`, `0-9`, `A-Z`, `!-_.`, never two of one class in a row).
    OauthHandler,
    /// duplicati/oauth-server StorageProvider.cs `CreateAuthTokenAsync`:
    /// keyid `Guid.NewGuid().ToString("N")` (32 lowercase hex), secret
    /// PasswordGenerator.cs `Generate()` (32 characters, the same classes and rule).
    OauthServer,
}

/// Length of our secrets, of oauth-handler's and of oauth-server's.
const BROKER_SECRET_LEN: usize = 43;
const HANDLER_SECRET_LEN: usize = 21;
const SERVER_SECRET_LEN: usize = 32;

/// A stored (v1) authid. Not `Clone`, `Debug` redacted.
pub struct AuthId {
    /// The keyid as a 128-bit number (a shorter oauth-handler keyid is the
    /// same number written with fewer leading zeros).
    pub(super) key_id: [u8; 16],
    /// How many hex digits the keyid was written with (30..=32).
    pub(super) key_digits: u8,
    pub(super) secret: AuthSecret,
    pub(super) format: AuthIdFormat,
    /// Where its grant lives (written as a tag unless it is the first).
    pub(super) shard: Shard,
}

impl std::fmt::Debug for AuthId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthId([redacted])")
    }
}

impl AuthId {
    /// An authid from a 32-digit keyid and any secret, unchecked: for
    /// known-answer tests whose vectors predate the strict spellings.
    #[cfg(test)]
    pub(crate) fn for_tests(key_hex: &str, secret: &str) -> AuthId {
        AuthId {
            key_id: hex_key_id(key_hex).unwrap_or_default(),
            key_digits: 32,
            secret: AuthSecret::new(secret.to_string()),
            format: AuthIdFormat::Broker,
            shard: Shard::FIRST,
        }
    }

    /// Which service's spelling this authid has.
    pub fn format(&self) -> AuthIdFormat {
        self.format
    }

    pub fn key_id(&self) -> &[u8; 16] {
        &self.key_id
    }

    pub fn secret(&self) -> &AuthSecret {
        &self.secret
    }

    /// The shard its grant lives on (the first for an untagged spelling).
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// `"<keyid>:<secret>"` (`"s<k>:<keyid>:<secret>"` on shard k >= 2),
    /// spelled as it was given (or minted): the one place an authid becomes a
    /// string, to be shown to its user once or sent to the service it came from.
    pub fn expose(&self) -> String {
        let hex = random::hex(&self.key_id);
        let skip = hex.len().saturating_sub(usize::from(self.key_digits));
        let tag = shard_tag::prefix(self.shard);
        format!(
            "{tag}{}:{}",
            hex.get(skip..).unwrap_or(&hex),
            self.secret.secret()
        )
    }
}

/// Parses `<keyid>:<secret>` (the shard tag already taken off) in one of the
/// three spellings. The Duplicati services' authids were all minted on shard
/// 1, so only ours may carry a tag.
pub(super) fn parse(s: &str, shard: Shard) -> Result<AuthId, AuthIdError> {
    let (key_text, secret) = s.split_once(':').ok_or(AuthIdError::Malformed)?;
    let key_id = hex_key_id(key_text).ok_or(AuthIdError::Malformed)?;
    let format = v1_format(key_text.len(), secret).ok_or(AuthIdError::Malformed)?;
    if shard != Shard::FIRST && format != AuthIdFormat::Broker {
        return Err(AuthIdError::Malformed);
    }
    Ok(AuthId {
        key_id,
        key_digits: key_text.len() as u8,
        secret: AuthSecret::new(secret.to_string()),
        format,
        shard,
    })
}

/// The keyid: 30 to 32 lowercase hex digits (uppercase is refused, so each
/// keyid has one spelling), as a 128-bit number. 30 and 31 digits occur only
/// in oauth-handler's authids.
fn hex_key_id(s: &str) -> Option<[u8; 16]> {
    if !(30..=32).contains(&s.len()) {
        return None;
    }
    let mut digits = [b'0'; 32];
    let pad = 32 - s.len();
    for (d, &c) in digits.iter_mut().skip(pad).zip(s.as_bytes()) {
        if !matches!(c, b'0'..=b'9' | b'a'..=b'f') {
            return None;
        }
        *d = c;
    }
    let nibble = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    Some(out)
}

/// Which format a keyid of `digits` hex digits and `secret` spell, if any.
fn v1_format(digits: usize, secret: &str) -> Option<AuthIdFormat> {
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let service = |b: u8| service_class(b).is_some();
    match secret.len() {
        BROKER_SECRET_LEN if digits == 32 && secret.bytes().all(base64url) => {
            Some(AuthIdFormat::Broker)
        }
        SERVER_SECRET_LEN if digits == 32 && secret.bytes().all(service) => {
            Some(AuthIdFormat::OauthServer)
        }
        HANDLER_SECRET_LEN if secret.bytes().all(service) => Some(AuthIdFormat::OauthHandler),
        _ => None,
    }
}

/// The character class of a Duplicati-service secret character (the
/// generators' four classes), or `None` outside them.
pub(super) fn service_class(b: u8) -> Option<u8> {
    match b {
        b'a'..=b'z' => Some(0),
        b'0'..=b'9' => Some(1),
        b'A'..=b'Z' => Some(2),
        b'!' | b'-' | b'_' | b'.' => Some(3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::test_support::{service_secret, v1};
    use super::*;
    use crate::authid::parse_authid;

    #[test]
    fn generated_authids_round_trip_and_differ() {
        let a = AuthId::generate(Shard::FIRST).unwrap();
        let b = AuthId::generate(Shard::FIRST).unwrap();
        let shown = a.expose();
        assert_eq!(shown.len(), 32 + 1 + 43);
        assert_ne!(shown, b.expose());
        let parsed = v1(&shown);
        assert_eq!(parsed.key_id(), a.key_id());
        assert_eq!(parsed.secret(), a.secret());
        assert_eq!(parsed.expose(), shown);
    }

    #[test]
    fn the_duplicati_services_authids_parse_and_keep_their_spelling() {
        let mut x = 0x2545_f491_4f6c_dd1d;
        for keyid in [
            "0".repeat(30),
            "abcdef0123456789abcdef01234567".to_string(),
            "fabcdef0123456789abcdef01234567".to_string(),
            "ffabcdef0123456789abcdef01234567".to_string(),
        ] {
            let authid = format!("{keyid}:{}", service_secret(21, &mut x));
            let a = v1(&authid);
            assert_eq!(a.format(), AuthIdFormat::OauthHandler, "{authid}");
            assert_eq!(a.expose(), authid);
        }
        let server = format!("{}:{}", "0a".repeat(16), service_secret(32, &mut x));
        let a = v1(&server);
        assert_eq!(a.format(), AuthIdFormat::OauthServer);
        assert_eq!(a.expose(), server);
        let ours = AuthId::generate(Shard::FIRST).unwrap();
        assert_eq!(v1(&ours.expose()).format(), AuthIdFormat::Broker);
    }

    #[test]
    fn a_shorter_oauth_handler_keyid_is_the_same_number_as_its_padded_form() {
        // `'%030x' % n` never writes a leading zero beyond the 30th digit, so a
        // 30- or 31-digit keyid and its zero-padded 32-digit form name one row.
        let short = v1(&format!("{}:{}", "1".repeat(30), "a1A!".repeat(5) + "b"));
        let padded = v1(&format!("00{}:{}", "1".repeat(30), "a1A!".repeat(5) + "b"));
        assert_eq!(short.key_id(), padded.key_id());
        assert_ne!(short.expose(), padded.expose());
    }

    #[test]
    fn only_the_three_spellings_parse() {
        let k = "0123456789abcdef0123456789abcdef";
        let service = "a1A!b2B-c3C_d4D.e5E!f";
        for (authid, ok) in [
            (format!("{k}:{}", "a".repeat(43)), true),
            (format!("{k}:{}", "a".repeat(42)), false),
            (format!("{k}:{}", "a".repeat(44)), false),
            (format!("{k}:{}", "a".repeat(32)), true),
            (format!("{k}:{}", "a".repeat(21)), true),
            (format!("{k}:{}", "a".repeat(31)), false),
            (format!("{k}:{}", "a".repeat(128)), false),
            // `!` and `.` are the services' characters, not base64url.
            (format!("{k}:{}!", "a".repeat(42)), false),
            (format!("{k}:{}!", "a".repeat(31)), true),
            (format!("{}:{service}", &k[2..]), true),
            (format!("{}:{service}", &k[3..]), false),
            (format!("{}:{}", &k[2..], "a".repeat(32)), false),
            (format!("{}:{}", &k[2..], "a".repeat(43)), false),
            (format!("{k}0:{service}"), false),
        ] {
            assert_eq!(parse_authid(&authid).is_ok(), ok, "{authid}");
        }
    }
}
