//! Authids: what a user pastes into the backup client.
//!
//! - **v1 (stored)**: `<keyid>:<secret>`. keyid = 16 CSPRNG bytes as 32 lowercase
//!   hex chars (locates the row, through a keyed hash); secret = 32 CSPRNG bytes as
//!   43 base64url chars (256 bits; the key material for the grant, never stored).
//!   Two more spellings are accepted, so that grants moved from Duplicati's own
//!   services keep the authids their users pasted ([`AuthIdFormat`]):
//!   oauth-handler's `<30–32 lowercase hex>:<21 chars of [A-Za-z0-9!._-]>` and
//!   oauth-server's `<32 hex>:<32 chars of [A-Za-z0-9!._-]>`. Anything else is
//!   malformed.
//! - **v2 (pass-through)**: `v2:<provider-id>:<refresh_token>`; nothing is stored.
//!   The token is written as it is, except that every byte outside visible ASCII
//!   (`0x21..=0x7e`) and `%` itself are written `%XX` (uppercase hex of the UTF-8
//!   byte): RFC 6749 (Appendix A.17) allows spaces in a refresh token and a JSON
//!   answer can carry any character, and every token a provider returns must come
//!   back as an authid this parser accepts. Each token has exactly one spelling.
//!
//! - **Shard tag**: a v1 authid in our spelling whose grant lives on shard
//!   k >= 2 (`crate::ids::Shard`, `D1_SHARDS` in `crate::config`) is written
//!   `s<k>:<32 hex>:<43 base64url>` (k decimal, 2..=999, no leading zero).
//!   Shard 1 is untagged, so every authid minted before sharding (and every
//!   oauth-handler / oauth-server spelling, which always live on shard 1)
//!   keeps its spelling and its shard; `s1:`, `s0:`, `s01:` and `s1000:` are
//!   malformed, as is a tag before a v2 or a Duplicati-service spelling. The
//!   tag only routes: the key hash and the seal come from the keyid and
//!   secret alone, exactly as untagged.
//!
//! Both contain `:` because Duplicati treats an authid without one as a raw
//! access token (duplicati/duplicati `Duplicati/Library/Backend/Dropbox/DropboxHelper.cs`
//! L45: `AccessTokenOnly = !authId.AuthId!.Contains(":")`). Parse errors never
//! contain the input.
//!
//! Why a tag is safe for the clients (read at duplicati/duplicati 66cfb24,
//! duplicati/ngclient e0e370f, golang/oauth2 89ff2e1): every one of them
//! carries the authid as an opaque string, as it already carries a v2 authid
//! with its extra colons. Duplicati sends it verbatim
//! (`Duplicati/Library/Backend/OAuthHelper/OAuthHelperHttpClient.cs` L125
//! `request.Headers.Add("X-AuthID", _Authid)`; L132-133 swap in a `v2_authid`
//! as given), checks only that it is non-empty
//! (`Duplicati/Library/Utility/Options/AuthIdOptionsHelper.cs` L162) and, for
//! Dropbox, that it contains a `:` (above). The old UI takes the hand-off's
//! `authid` as it is (`Duplicati/Server/webroot/ngax/scripts/services/EditUriBuiltins.js`
//! L262-263) and validates only that the field is filled (L1118-1120); the
//! new UI strips the `authid:` message prefix and keeps the rest
//! (ngclient `projects/ngclient/src/app/backup/destination/single-destination/single-destination.component.ts`
//! L520-525: `event.data.replace('authid:', '')` replaces only the first
//! occurrence). Akeeba's connectors send the refresh token `urlencode`d in
//! the query (`crate::akeeba`, `OneDriveBusiness.php` `getRefreshUrl()`) and
//! [`crate::akeeba::classify`] knows a tagged authid for ours because it
//! parses. rclone keeps the token JSON as it is (rclone
//! `lib/oauthutil/oauthutil.go` `PutToken`: `json.Marshal(token)`) and
//! golang/oauth2 sends the refresh token form-encoded (`oauth2.go` L281
//! `"refresh_token": {tf.refreshToken}`, `internal/token.go` L196 `v.Encode()`).

use crate::error::BrokerError;
use crate::ids::Shard;
use crate::random::{self, RandomError};
use crate::secret::{AuthSecret, RefreshToken};

/// Longest input considered at all: a v2 authid still fits in one request header
/// line (8 KiB). A v2 authid longer than this cannot be made (see [`next_v2_authid`]).
pub const MAX_AUTHID_LEN: usize = 8192;

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
    key_id: [u8; 16],
    /// How many hex digits the keyid was written with (30..=32).
    key_digits: u8,
    secret: AuthSecret,
    format: AuthIdFormat,
    /// Where its grant lives (written as a tag unless it is the first).
    shard: Shard,
}

/// Whether the Workers runtime replaces `secret` with `REDACTED` when a URL
/// carrying it reaches a trace event (`wrangler tail`, Tail Workers,
/// Logpush): its heuristic redacts a run of at least 21 base64 characters
/// with at least two digits, two capitals and two lowercase letters
/// (cloudflare/workerd, src/workerd/api/util.c++ `redactUrl`, declared with
/// that rule in util.h). A random 43-character secret misses it about once
/// in 160 draws (fewer than two digits); [`AuthId::generate`] draws again.
/// The key id half (32 hex digits) is always redacted.
pub fn redacted_in_urls(secret: &str) -> bool {
    let count = |f: fn(&u8) -> bool| secret.bytes().filter(&f).count();
    secret.len() >= 21
        && count(u8::is_ascii_digit) >= 2
        && count(u8::is_ascii_uppercase) >= 2
        && count(u8::is_ascii_lowercase) >= 2
}

impl std::fmt::Debug for AuthId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthId([redacted])")
    }
}

impl AuthId {
    /// A fresh authid from the CSPRNG for a grant stored on `shard`. Its
    /// secret half is drawn again until the platform's log redaction
    /// recognises it ([`redacted_in_urls`]): Akeeba's refresh URL carries it in
    /// its query, and trace events keep query strings.
    pub fn generate(shard: Shard) -> Result<AuthId, RandomError> {
        let mut key_id = [0u8; 16];
        random::fill(&mut key_id)?;
        let mut secret = random::token_b64url(32)?;
        // About 1 draw in 160 is redrawn; 64 failures in a row (a chance
        // of 10^-140) would keep the last draw rather than loop on.
        for _ in 0..64 {
            if redacted_in_urls(&secret) {
                break;
            }
            secret = random::token_b64url(32)?;
        }
        Ok(AuthId {
            key_id,
            key_digits: 32,
            secret: AuthSecret::new(secret),
            format: AuthIdFormat::Broker,
            shard,
        })
    }

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
        let tag = match self.shard {
            Shard::FIRST => String::new(),
            other => format!("s{}:", other.number()),
        };
        format!(
            "{tag}{}:{}",
            hex.get(skip..).unwrap_or(&hex),
            self.secret.secret()
        )
    }
}

/// A parsed authid.
pub enum ParsedAuthId {
    V1(AuthId),
    V2 {
        provider: String,
        refresh_token: RefreshToken,
    },
}

impl std::fmt::Debug for ParsedAuthId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParsedAuthId::V1(_) => f.write_str("V1([redacted])"),
            ParsedAuthId::V2 { provider, .. } => write!(f, "V2({provider}, [redacted])"),
        }
    }
}

/// Why an authid was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthIdError {
    Empty,
    TooLong,
    Malformed,
}

impl AuthIdError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthIdError::Empty => "missing_authid",
            AuthIdError::TooLong | AuthIdError::Malformed => "malformed_authid",
        }
    }
}

impl std::fmt::Display for AuthIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthIdError::Empty => "no authid",
            AuthIdError::TooLong => "authid too long",
            AuthIdError::Malformed => "authid malformed",
        })
    }
}

impl From<AuthIdError> for crate::error::BrokerError {
    fn from(e: AuthIdError) -> Self {
        match e {
            AuthIdError::Empty => crate::error::BrokerError::MissingAuthId,
            AuthIdError::TooLong | AuthIdError::Malformed => {
                crate::error::BrokerError::MalformedAuthId
            }
        }
    }
}

/// Whether a token byte is written as it is in a v2 authid (else `%XX`).
fn plain(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b'%'
}

/// The v2 authid for `provider` and `refresh_token`, escaped as the module says.
pub fn v2_authid(provider: &str, refresh_token: &RefreshToken) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let token = refresh_token.secret();
    let mut s = String::with_capacity(4 + provider.len() + token.len());
    s.push_str("v2:");
    s.push_str(provider);
    s.push(':');
    for &b in token.as_bytes() {
        if plain(b) {
            s.push(char::from(b));
        } else {
            s.push('%');
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    s
}

/// The v2 authid to hand back after a provider answered with `refresh_token`,
/// or `None` when it would be longer than [`MAX_AUTHID_LEN`] and so could never
/// be presented again.
pub fn next_v2_authid(provider: &str, refresh_token: &RefreshToken) -> Option<String> {
    Some(v2_authid(provider, refresh_token)).filter(|a| a.len() <= MAX_AUTHID_LEN)
}

/// Reverses the escaping of [`v2_authid`]: only canonical escapes (uppercase hex
/// of a byte that must be escaped) and a UTF-8 result, so each token has one
/// spelling and a parsed authid prints back exactly as it was given.
fn unescape_token(s: &str) -> Option<String> {
    let upper_hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = upper_hex(*bytes.get(i + 1)?)?;
            let lo = upper_hex(*bytes.get(i + 2)?)?;
            let decoded = (hi << 4) | lo;
            if plain(decoded) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else if plain(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// An estimate of the bits of randomness in `s`: its length times the Shannon
/// entropy of its character frequencies. It cannot tell a random string from a
/// clever pattern, only catch the obvious: repeats, few symbols, short strings.
fn estimated_bits(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for &b in s.as_bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2() * n
        })
        .sum()
}

fn distinct_bytes(s: &str) -> usize {
    let mut seen = [false; 256];
    for &b in s.as_bytes() {
        seen[usize::from(b)] = true;
    }
    seen.iter().filter(|&&x| x).count()
}

/// Whether a pass-through refresh token is worth a call to the provider. Real
/// refresh tokens carry at least 128 random bits (Google's ~100 characters, Box's
/// and Dropbox's 64, Microsoft's and Keycloak's JWT-like ones far more); this
/// floor is set well below that, so it refuses only obvious garbage (`x`,
/// `sometoken`, one or two characters repeated) and never a token a provider
/// issued: at least 16 characters, 8 different ones, and 64 estimated bits.
pub fn plausible_refresh_token(token: &RefreshToken) -> bool {
    let t = token.secret();
    t.len() >= 16 && distinct_bytes(t) >= 8 && estimated_bits(t) >= 64.0
}

/// A v1 authid whose secret a caller chose (`POST /import`) but which does not
/// look like the output of a CSPRNG.
pub const WEAK_AUTHID: BrokerError = BrokerError::BadRequest {
    code: "weak_authid",
    what: "the authid in X-AuthID does not look randomly generated; \
           leave X-AuthID out and the broker mints one",
};

impl AuthId {
    /// Whether the secret half could have come from a CSPRNG, as ours (43
    /// base64url characters, 256 bits) and the Duplicati services' (32 random
    /// characters) do: at least 112 estimated bits, at most half of its
    /// neighbouring characters equal or adjacent (`aa`, `ab`, `21`), and both
    /// upper- and lowercase letters. A random 32-character secret estimates at
    /// 125 bits or more, has about one neighbour pair in twenty adjacent, lacks
    /// a letter case with odds of about 1 in 10^7; what a person picks (repeats,
    /// lowercase words, runs such as `abcdef…` or `0123…`) fails. It cannot see
    /// through a clever choice: `POST /import` without `X-AuthID` mints one.
    /// oauth-handler's 21-character secrets are held to their generator's own
    /// rule instead ([`handler_secret_looks_generated`]).
    pub fn looks_minted(&self) -> bool {
        let s = self.secret.secret();
        if self.format == AuthIdFormat::OauthHandler {
            return handler_secret_looks_generated(s);
        }
        let pairs = s.len().saturating_sub(1).max(1);
        let adjacent = s
            .as_bytes()
            .windows(2)
            .filter(|w| w[0].abs_diff(w[1]) <= 1)
            .count();
        let cases =
            s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase());
        estimated_bits(s) >= 112.0 && adjacent * 2 <= pairs && cases
    }
}

/// The character class of a Duplicati-service secret character (the
/// generators' four classes), or `None` outside them.
fn service_class(b: u8) -> Option<u8> {
    match b {
        b'a'..=b'z' => Some(0),
        b'0'..=b'9' => Some(1),
        b'A'..=b'Z' => Some(2),
        b'!' | b'-' | b'_' | b'.' => Some(3),
        _ => None,
    }
}

/// Whether a 21-character oauth-handler secret could have come from its
/// generator (password_generator.py): never two characters of one class in a
/// row (the generator's own rule), at least three of the four classes, and at
/// least 64 estimated bits. A generated one has about 80; it fails these with
/// odds below one in a thousand (unit-tested against the generator's
/// algorithm), while repeats, words and runs fail at once.
fn handler_secret_looks_generated(s: &str) -> bool {
    let classes: Vec<u8> = s.bytes().filter_map(service_class).collect();
    let alternating = classes.windows(2).all(|w| w[0] != w[1]);
    let mut seen = [false; 4];
    for &c in &classes {
        seen[usize::from(c)] = true;
    }
    let kinds = seen.iter().filter(|&&x| x).count();
    classes.len() == s.len() && alternating && kinds >= 3 && estimated_bits(s) >= 64.0
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

/// Parses an authid exactly as a client sent it: nothing is trimmed (Duplicati
/// sends it verbatim), so surrounding whitespace is malformed. `v2:` selects a
/// pass-through authid; anything else must be a v1 authid.
pub fn parse_authid(s: &str) -> Result<ParsedAuthId, AuthIdError> {
    if s.is_empty() {
        return Err(AuthIdError::Empty);
    }
    if s.len() > MAX_AUTHID_LEN {
        return Err(AuthIdError::TooLong);
    }
    if let Some(rest) = s.strip_prefix("v2:") {
        let (provider, token) = rest.split_once(':').ok_or(AuthIdError::Malformed)?;
        let provider_ok = (1..=64).contains(&provider.len())
            && provider
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        let token = unescape_token(token)
            .filter(|t| !t.is_empty())
            .ok_or(AuthIdError::Malformed)?;
        if !provider_ok {
            return Err(AuthIdError::Malformed);
        }
        return Ok(ParsedAuthId::V2 {
            provider: provider.to_string(),
            refresh_token: RefreshToken::new(token),
        });
    }
    let (shard, s) = match s.strip_prefix('s') {
        // No keyid starts with `s` (hex), nor does `v2:`: a tag or nothing.
        Some(tagged) => {
            let (tag, rest) = tagged.split_once(':').ok_or(AuthIdError::Malformed)?;
            (shard_tag(tag).ok_or(AuthIdError::Malformed)?, rest)
        }
        None => (Shard::FIRST, s),
    };
    let (key_text, secret) = s.split_once(':').ok_or(AuthIdError::Malformed)?;
    let key_id = hex_key_id(key_text).ok_or(AuthIdError::Malformed)?;
    let format = v1_format(key_text.len(), secret).ok_or(AuthIdError::Malformed)?;
    if shard != Shard::FIRST && format != AuthIdFormat::Broker {
        // The Duplicati services' authids were all minted on shard 1.
        return Err(AuthIdError::Malformed);
    }
    Ok(ParsedAuthId::V1(AuthId {
        key_id,
        key_digits: key_text.len() as u8,
        secret: AuthSecret::new(secret.to_string()),
        format,
        shard,
    }))
}

/// The shard a tag `<k>` (from `s<k>:`) names: decimal, no leading zero,
/// 2..=999 (shard 1 is written without a tag, so each authid has one spelling).
fn shard_tag(tag: &str) -> Option<Shard> {
    let canonical = !tag.is_empty()
        && tag.len() <= 3
        && tag.bytes().all(|b| b.is_ascii_digit())
        && !tag.starts_with('0');
    if !canonical {
        return None;
    }
    // At most three digits: no overflow.
    let k = tag.bytes().fold(0u16, |k, d| k * 10 + u16::from(d - b'0'));
    Shard::new(k).filter(|&s| s != Shard::FIRST)
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn the_platform_redaction_rule_is_the_runtimes() {
        assert!(redacted_in_urls("ab12CDefghijklmnopqrst"));
        // Too short, one digit, one capital, one lowercase: kept by the runtime.
        assert!(!redacted_in_urls("ab12CDefghijklmnopqr"));
        assert!(!redacted_in_urls(
            "kQKtndSxyzabcdefghijkLMNOPqrs1uvw-_xyzABCDE"
        ));
        assert!(!redacted_in_urls("ab12Cdefghijklmnopqrstu"));
        assert!(!redacted_in_urls("AB12CDEFGHIJKLMNOPQRSTu"));
    }

    #[test]
    fn every_minted_authid_is_redacted_by_the_platform() {
        for _ in 0..20_000 {
            let a = AuthId::generate(Shard::FIRST).unwrap();
            assert!(redacted_in_urls(a.secret().secret()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(s: &str) -> AuthId {
        match parse_authid(s) {
            Ok(ParsedAuthId::V1(a)) => a,
            other => panic!("not v1: {other:?}"),
        }
    }

    fn token_of(authid: &str) -> String {
        match parse_authid(authid) {
            Ok(ParsedAuthId::V2 { refresh_token, .. }) => refresh_token.secret().to_string(),
            other => panic!("not v2: {other:?}"),
        }
    }

    /// A deterministic stream of characters from every class a JSON string can
    /// hold (xorshift; no randomness needed to cover them).
    fn tokens() -> Vec<String> {
        let alphabet: Vec<char> = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', 'ß', '日', '本', '\u{2028}', '🔑', '\u{fffd}'])
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out: Vec<String> = vec![
            "a b".into(),
            " leading and trailing ".into(),
            "é".into(),
            "%".into(),
            "%41".into(),
            "%%".into(),
            "\t\r\n".into(),
            "\0".into(),
            ":".into(),
            "v2:demo:nested".into(),
            (0u8..=0x7f).map(char::from).collect(),
            "x".repeat(2000),
        ];
        for _ in 0..500 {
            let len = 1 + (next() % 300) as usize;
            out.push(
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn every_token_a_provider_can_return_round_trips_through_its_v2_authid() {
        for t in tokens() {
            let rt = RefreshToken::new(t.clone());
            let authid = v2_authid("box.com", &rt);
            assert!(
                authid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "one header-safe word: {authid:?}"
            );
            match parse_authid(&authid) {
                Ok(ParsedAuthId::V2 {
                    provider,
                    refresh_token,
                }) => {
                    assert_eq!(provider, "box.com");
                    assert_eq!(refresh_token.secret(), t, "{authid:?}");
                    assert_eq!(v2_authid(&provider, &refresh_token), authid);
                }
                other => panic!("{t:?} -> {authid:?} -> {other:?}"),
            }
            assert_eq!(next_v2_authid("box.com", &rt), Some(authid));
        }
    }

    #[test]
    fn a_plain_token_keeps_the_spelling_it_always_had() {
        let t = "1//0gAbc-_.~*!$+=/M.C5_BAY.0.U.-Cq!Yz*";
        let rt = RefreshToken::new(t.to_string());
        assert_eq!(v2_authid("demo", &rt), format!("v2:demo:{t}"));
        assert_eq!(
            v2_authid("demo", &RefreshToken::new("a é%".into())),
            "v2:demo:a%20%C3%A9%25"
        );
    }

    #[test]
    fn each_token_has_one_spelling_so_odd_escapes_are_refused() {
        let bad = |s: &str| {
            assert_eq!(
                parse_authid(s).map(|_| ()),
                Err(AuthIdError::Malformed),
                "{s:?}"
            )
        };
        bad("v2:demo:%41"); // escapes a character that stands for itself
        bad("v2:demo:%c3%a9"); // lowercase hex
        bad("v2:demo:%FF"); // not UTF-8
        bad("v2:demo:%C3"); // a UTF-8 sequence cut short
        bad("v2:demo:%2");
        bad("v2:demo:%");
        bad("v2:demo:%G0");
        bad("v2:demo:a%20 b"); // an escape does not make a raw space valid
        assert_eq!(token_of("v2:demo:%C3%A9"), "é");
        assert_eq!(token_of("v2:demo:%00"), "\0");
    }

    #[test]
    fn a_rotated_token_too_long_to_present_again_gets_no_authid() {
        let plain = |n: usize| RefreshToken::new("t".repeat(n));
        let head = "v2:demo:".len();
        assert!(next_v2_authid("demo", &plain(MAX_AUTHID_LEN - head)).is_some());
        assert_eq!(
            next_v2_authid("demo", &plain(MAX_AUTHID_LEN - head + 1)),
            None
        );
        // Escaping counts: 2,731 spaces are 8,193 characters written.
        let spaces = RefreshToken::new(" ".repeat((MAX_AUTHID_LEN - head) / 3 + 1));
        assert_eq!(next_v2_authid("demo", &spaces), None);
    }

    #[test]
    fn obvious_garbage_is_not_a_plausible_refresh_token() {
        let p = |s: &str| plausible_refresh_token(&RefreshToken::new(s.to_string()));
        for garbage in [
            "x",
            "sometoken",
            "abcdefghijklmno",
            &"a".repeat(200),
            &"ab".repeat(40),
            &"0".repeat(28),
            &"abcd".repeat(16),
        ] {
            assert!(!p(garbage), "{garbage:?}");
        }
        // Shapes real providers issue.
        for real in [
            "mockRT_0f3a9c2d81e47b6650c1d2e3f4a5b6c7",
            "1//0gLkzQ3u9-HfXCgYIARAAGBASNwF-L9IrmG1sJ2kq7c4aV8yZbWx0nPdE5tRfUoVhQiKjMl6",
            "M.C520_BAY.0.U.-Cq!Yz*8mN2$kL4pQ7rT1vW3xZ5aB9cD0eF",
            "sl.u.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCd",
            "2mQd8VYrX1KzTLfNp0wHsB7cJ6gE4aRu",
        ] {
            assert!(p(real), "{real:?}");
        }
        // Random tokens of 128 bits, hex or base64url, always pass.
        for _ in 0..1000 {
            let b64 = random::token_b64url(16).unwrap();
            let mut raw = [0u8; 16];
            random::fill(&mut raw).unwrap();
            assert!(p(&b64) && p(&random::hex(&raw)), "{b64}");
        }
    }

    #[test]
    fn import_takes_only_secrets_that_look_minted() {
        let k = "0123456789abcdef0123456789abcdef";
        for _ in 0..1000 {
            assert!(AuthId::generate(Shard::FIRST).unwrap().looks_minted());
            // The Duplicati services' 32-character secrets.
            let legacy = format!("{k}:{}", random::token_b64url(24).unwrap());
            assert!(v1(&legacy).looks_minted(), "{legacy}");
        }
        for weak in [
            "k".repeat(43),
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ".to_string(),
            "password-password-password-passw".to_string(),
            "0123456789".repeat(4) + "012",
            "correct-horse-battery-staple-correct-horses".to_string(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab".to_string(),
        ] {
            assert!(!v1(&format!("{k}:{weak}")).looks_minted(), "{weak}");
        }
        assert_eq!(WEAK_AUTHID.status(), 400);
        assert_eq!(WEAK_AUTHID.code(), "weak_authid");
    }

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

    /// The Duplicati services' password generators (oauth-handler
    /// password_generator.py `generate_pass`, oauth-server PasswordGenerator.cs
    /// `Generate`): a random class, never the previous one, then a random
    /// character of it. Driven by a deterministic xorshift here.
    fn service_secret(len: usize, x: &mut u64) -> String {
        const CLASSES: [&str; 4] = [
            "abcdefghijklmnopqrstuvwxyz",
            "0123456789",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "!-_.",
        ];
        let mut next = |n: usize| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x % n as u64) as usize
        };
        let mut out = String::new();
        let mut prev = usize::MAX;
        while out.len() < len {
            let c = next(4);
            if c == prev {
                continue;
            }
            prev = c;
            let set = CLASSES[c].as_bytes();
            out.push(char::from(set[next(set.len())]));
        }
        out
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

    #[test]
    fn secrets_from_the_services_generators_look_minted_and_chosen_ones_do_not() {
        let mut x = 0x9e37_79b9_7f4a_7c15;
        let (mut handler_fails, mut server_fails) = (0, 0);
        for _ in 0..10_000 {
            let h = format!("{}:{}", "1".repeat(30), service_secret(21, &mut x));
            handler_fails += usize::from(!v1(&h).looks_minted());
            let s = format!("{}:{}", "2".repeat(32), service_secret(32, &mut x));
            server_fails += usize::from(!v1(&s).looks_minted());
        }
        assert!(handler_fails <= 10, "{handler_fails} of 10000");
        assert!(server_fails <= 10, "{server_fails} of 10000");
        for weak in [
            "aaaaaaaaaaaaaaaaaaaaa",
            "a1a1a1a1a1a1a1a1a1a1a",
            "a1A!a1A!a1A!a1A!a1A!a",
            "password1password1pa",
            "Password1!Password1!P",
        ] {
            let authid = format!("{}:{weak}", "1".repeat(30));
            if let Ok(ParsedAuthId::V1(a)) = parse_authid(&authid) {
                assert!(!a.looks_minted(), "{weak}");
            }
        }
    }

    #[test]
    fn malformed_authids_are_refused_without_echo() {
        let k = "0123456789abcdef0123456789abcdef";
        let secret = "s".repeat(40);
        let cases = [
            ("", AuthIdError::Empty),
            ("nocolon", AuthIdError::Malformed),
            (
                &format!("{}:{secret}", k.to_uppercase()) as &str,
                AuthIdError::Malformed,
            ),
            (&format!("{}:{secret}", &k[1..]), AuthIdError::Malformed),
            (&format!("{k}:{secret} "), AuthIdError::Malformed),
            (&format!(" {k}:{secret}"), AuthIdError::Malformed),
            (&format!("{k}:{secret}\0"), AuthIdError::Malformed),
            (&format!("{k}:{}é", "s".repeat(39)), AuthIdError::Malformed),
            (&format!("{k}:{}", "x".repeat(9000)), AuthIdError::TooLong),
            ("v2:demo", AuthIdError::Malformed),
            ("v2::rt", AuthIdError::Malformed),
            ("v2:Demo:rt", AuthIdError::Malformed),
            ("v2:demo:", AuthIdError::Malformed),
            ("v2:demo:has space", AuthIdError::Malformed),
        ];
        for (input, want) in cases {
            let err = parse_authid(input).unwrap_err();
            assert_eq!(err, want, "{input:?}");
            if input.len() > 3 {
                assert!(!err.to_string().contains(input));
            }
        }
        assert_eq!(AuthIdError::Empty.code(), "missing_authid");
        assert_eq!(AuthIdError::TooLong.code(), "malformed_authid");
    }

    #[test]
    fn length_bounds_of_v2_parts_and_of_the_whole() {
        let p = |s: &str| parse_authid(s).map(|_| ());
        let token = |n: usize| format!("v2:demo:{}", "t".repeat(n));
        assert_eq!(p(&token(1)), Ok(()));
        assert_eq!(p(&token(MAX_AUTHID_LEN - 8)), Ok(()));
        assert_eq!(p(&token(MAX_AUTHID_LEN - 7)), Err(AuthIdError::TooLong));
        assert_eq!(p(&format!("v2:{}:rt", "p".repeat(64))), Ok(()));
        assert_eq!(
            p(&format!("v2:{}:rt", "p".repeat(65))),
            Err(AuthIdError::Malformed)
        );
        let k = "0123456789abcdef0123456789abcdef";
        let at = |n: usize| format!("{k}:{}", "s".repeat(n - 33));
        assert_eq!(p(&at(MAX_AUTHID_LEN)), Err(AuthIdError::Malformed)); // secret > 128
        assert_eq!(p(&at(MAX_AUTHID_LEN + 1)), Err(AuthIdError::TooLong));
    }

    #[test]
    fn refused_characters() {
        let k = "0123456789abcdef0123456789abcdef";
        let s = "s".repeat(39);
        for bad in ["+", "/", ":", "=", "~", "\t", "\u{7f}"] {
            assert_eq!(
                parse_authid(&format!("{k}:{s}{bad}")).map(|_| ()),
                Err(AuthIdError::Malformed),
                "v1 {bad:?}"
            );
        }
        for bad in ["\t", "\u{7f}", "\0", "é", "\n"] {
            assert_eq!(
                parse_authid(&format!("v2:demo:rt{bad}")).map(|_| ()),
                Err(AuthIdError::Malformed),
                "v2 {bad:?}"
            );
        }
        for bad in ["Demo", "de mo", "de/mo"] {
            assert_eq!(
                parse_authid(&format!("v2:{bad}:rt")).map(|_| ()),
                Err(AuthIdError::Malformed),
                "provider {bad:?}"
            );
        }
        // Every visible ASCII character but `%` stands for itself in a
        // pass-through token; `%` starts an escape.
        let visible: String = (0x21u8..=0x7e)
            .filter(|&b| b != b'%')
            .map(char::from)
            .collect();
        assert!(parse_authid(&format!("v2:a.b_c-9:{visible}")).is_ok());
        assert_eq!(token_of("v2:demo:100%25"), "100%");
    }

    #[test]
    fn generated_secrets_are_43_base64url_chars() {
        let a = AuthId::generate(Shard::FIRST).unwrap();
        let s = a.secret().secret();
        assert_eq!(s.len(), 43);
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn v2_keeps_colons_inside_the_refresh_token() {
        match parse_authid("v2:box.com:a:b:c//d").unwrap() {
            ParsedAuthId::V2 {
                provider,
                refresh_token,
            } => {
                assert_eq!(provider, "box.com");
                assert_eq!(refresh_token.secret(), "a:b:c//d");
                assert_eq!(v2_authid(&provider, &refresh_token), "v2:box.com:a:b:c//d");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_shard_tag_round_trips_and_names_the_shard() {
        for k in [2u16, 3, 10, 99, 100, 999] {
            let shard = Shard::new(k).unwrap();
            let a = AuthId::generate(shard).unwrap();
            let shown = a.expose();
            assert!(shown.starts_with(&format!("s{k}:")), "{k}");
            let parsed = v1(&shown);
            assert_eq!(parsed.shard(), shard);
            assert_eq!(parsed.format(), AuthIdFormat::Broker);
            assert_eq!(parsed.key_id(), a.key_id());
            assert_eq!(parsed.secret(), a.secret());
            assert_eq!(parsed.expose(), shown);
        }
        let first = AuthId::generate(Shard::FIRST).unwrap().expose();
        assert_eq!(first.len(), 32 + 1 + 43, "shard 1 keeps today's spelling");
        assert_eq!(v1(&first).shard(), Shard::FIRST);
    }

    #[test]
    fn the_tag_changes_neither_the_key_hash_nor_the_seal() {
        let keys =
            crate::seal::ServerKeys::parse("1:0123456789abcdef0123456789abcdef", None).unwrap();
        let plain = AuthId::generate(Shard::FIRST).unwrap().expose();
        let tagged = v1(&format!("s7:{plain}"));
        let plain = v1(&plain);
        assert_eq!(tagged.shard(), Shard::new(7).unwrap());
        assert_eq!(tagged.key_id(), plain.key_id());
        assert_eq!(keys.key_hash(&tagged), keys.key_hash(&plain));
        assert_eq!(keys.lookup_hashes(&tagged), keys.lookup_hashes(&plain));
        // Sealed under the tagged spelling, opened under the untagged one and back.
        let (hash, sealed) = keys.seal(&tagged, "demo", b"grant").unwrap();
        assert_eq!(keys.open(&plain, "demo", &hash, &sealed).unwrap(), b"grant");
        let (hash, sealed) = keys.seal(&plain, "demo", b"grant").unwrap();
        assert_eq!(
            keys.open(&tagged, "demo", &hash, &sealed).unwrap(),
            b"grant"
        );
    }

    #[test]
    fn only_a_canonical_tag_for_shards_2_to_999_before_our_spelling_parses() {
        let ours = AuthId::generate(Shard::FIRST).unwrap().expose();
        let service = format!("{}:a1A!b2B-c3C_d4D.e5E!f", "1".repeat(30));
        let server = format!("{}:{}", "0a".repeat(16), "a1A!".repeat(8));
        assert!(parse_authid(&service).is_ok() && parse_authid(&server).is_ok());
        for bad in [
            format!("s1:{ours}"),    // shard 1 is untagged
            format!("s0:{ours}"),    // no shard 0
            format!("s01:{ours}"),   // a leading zero
            format!("s002:{ours}"),  // leading zeros
            format!("s1000:{ours}"), // more than three digits
            format!("s65538:{ours}"),
            format!("s:{ours}"),
            format!("s+2:{ours}"),
            format!("s-2:{ours}"),
            format!("s 2:{ours}"),
            format!("S2:{ours}"),
            format!("s2{ours}"),
            format!("s2::{ours}"),
            format!("s2:s3:{ours}"),
            format!("s2:{service}"), // the Duplicati services' spellings: shard 1 only
            format!("s2:{server}"),
            "s2:v2:demo:TOPSECRETtoken".to_string(),
            "s2:".to_string(),
            "s2".to_string(),
        ] {
            let err = parse_authid(&bad).map(|_| ()).unwrap_err();
            assert_eq!(err, AuthIdError::Malformed, "{bad}");
            assert_eq!(err.code(), "malformed_authid");
            assert!(!err.to_string().contains(&ours));
        }
        // A v2 authid is never a shard's, even with a token that looks tagged.
        match parse_authid(&format!("v2:demo:s2:{ours}")) {
            Ok(ParsedAuthId::V2 { .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let a = AuthId::generate(Shard::FIRST).unwrap();
        let shown = a.expose();
        let (k, s) = shown.split_once(':').unwrap();
        let dbg = format!("{a:?} {:?}", parse_authid(&shown).unwrap());
        assert!(!dbg.contains(k) && !dbg.contains(s));
        let v2 = format!("{:?}", parse_authid("v2:demo:TOPSECRET").unwrap());
        assert!(!v2.contains("TOPSECRET"));
    }
}
