//! Sealed-blob decoding and stored/upstream JSON: arbitrary rows never open and
//! never panic; arbitrary bytes never panic the grant or token parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_broker::authid::{parse_authid, ParsedAuthId};
use oauth_broker::grant::Grant;
use oauth_broker::ids::KeyHash;
use oauth_broker::seal::{Sealed, ServerKeys};
use oauth_broker::upstream;

fuzz_target!(|data: &[u8]| {
    let _ = Grant::from_bytes(data);
    let _ = Grant::import(data);
    let _ = upstream::classify(200, data);
    let _ = upstream::classify(400, data);
    let s = String::from_utf8_lossy(data);
    let mut parts = s.splitn(4, '|');
    let (Some(v), Some(nonce), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(keys) = ServerKeys::parse("1:fuzzing-server-secret-0123456789abcdef", None) else {
        return;
    };
    let Ok(ParsedAuthId::V1(a)) =
        parse_authid("00112233445566778899aabbccddeeff:fuzz-authid-secret-0123456789abcdef")
    else {
        return;
    };
    let sealed = Sealed {
        key_version: v.len() as u32,
        nonce: nonce.to_string(),
        ciphertext: ct.to_string(),
    };
    let kh = keys.key_hash(&a);
    assert!(keys.open(&a, "demo", &kh, &sealed).is_err());
    assert!(keys
        .open(&a, "demo", &KeyHash::new(parts.next().unwrap_or("")), &sealed)
        .is_err());
});
