//! Form/query parsing and the values taken from it: never panics; a JSONP body
//! exists only for a valid callback and starts with the fixed prefix.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_broker::{cookie, handoff, login, request};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let params = request::parse_params(&s);
    let _ = request::authid_from(None, &params, &params);
    if let Ok(Some(cb)) = request::single(&params, "callback") {
        match handoff::jsonp(cb, &serde_json::json!({"wait": "Not ready"})) {
            Some(js) => {
                assert!(handoff::valid_callback(cb));
                assert!(js.starts_with("/**/ "));
                assert!(!cb.contains(['(', ')', ';', '<', '\n']));
            }
            None => assert!(!handoff::valid_callback(cb)),
        }
    }
    if let Ok(Some(t)) = request::single(&params, "token") {
        let _ = handoff::valid_token(t);
    }
    let _ = cookie::value(&s, login::COOKIE_NAME);
});
