//! `OAUTH_PROVIDERS` parsing: never panics; accepted providers have valid ids and URLs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_broker::providers::Catalogue;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Catalogue::load(Some(s)) {
        for p in c.all() {
            assert!(!p.id.is_empty() && p.id.len() <= 64);
            assert!(url::Url::parse(&p.token_url).is_ok());
            assert!(p.secret_binding().starts_with("CLIENT_SECRET_"));
        }
    }
});
