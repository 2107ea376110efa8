//! The shard tag: `s<k>:` before our spelling names the shard (2..=999) its
//! grant lives on; shard 1 is untagged, so every authid minted before
//! sharding keeps its spelling. The tag only routes: the key hash and the
//! seal come from the keyid and secret alone (`docs/reference.md`, "Authids").

use super::error::AuthIdError;
use crate::ids::Shard;

/// Takes the tag off `s`: the shard it names and the rest, or the first
/// shard and `s` as it is when it carries none. No keyid starts with `s`
/// (hex), nor does `v2:`: an `s` is a tag or nothing.
pub(super) fn split(s: &str) -> Result<(Shard, &str), AuthIdError> {
    match s.strip_prefix('s') {
        Some(tagged) => {
            let (tag, rest) = tagged.split_once(':').ok_or(AuthIdError::Malformed)?;
            Ok((parse(tag).ok_or(AuthIdError::Malformed)?, rest))
        }
        None => Ok((Shard::FIRST, s)),
    }
}

/// The tag written before an authid of `shard`: none for the first.
pub(super) fn prefix(shard: Shard) -> String {
    match shard {
        Shard::FIRST => String::new(),
        other => format!("s{}:", other.number()),
    }
}

/// The shard a tag `<k>` (from `s<k>:`) names: decimal, no leading zero,
/// 2..=999 (shard 1 is written without a tag, so each authid has one spelling).
fn parse(tag: &str) -> Option<Shard> {
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
mod tests {
    use super::super::parse::test_support::v1;
    use crate::authid::{parse_authid, AuthId, AuthIdError, AuthIdFormat, ParsedAuthId};
    use crate::ids::Shard;

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
}
