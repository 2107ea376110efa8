//! Authid parsing: never panics; what parses prints back identically; errors
//! never carry the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_broker::authid::{parse_authid, v2_authid, ParsedAuthId};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_authid(s) {
        Ok(ParsedAuthId::V1(a)) => assert_eq!(a.expose(), s),
        Ok(ParsedAuthId::V2 {
            provider,
            refresh_token,
        }) => {
            assert_eq!(v2_authid(&provider, &refresh_token), s)
        }
        // Errors are fixed strings: the input can never be echoed through them.
        Err(e) => assert!(matches!(
            e.to_string().as_str(),
            "no authid" | "authid too long" | "authid malformed"
        )),
    }
});
